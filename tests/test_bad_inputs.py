"""The bad-input suite: every command, every kind of broken input.

Each case runs a real command through Click and checks: exit code 2, one line on
stderr naming the file and the problem, no traceback, nothing on stdout, and no
output file left behind. Inputs that must WORK (RGBA, grey, 16-bit) are checked too,
and decisions (an expired, tampered or reused token; two faces in view) are exit 1.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facelivenet.cli import cli
from facelivenet.video import VideoWriter

FACE = Path(__file__).resolve().parent.parent / "data" / "parity-faces" / "astronaut_centre.png"


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def _face() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (its data is a single pixel's)."""
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b'IHDR' + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2] if frames else (64, 64)
    with VideoWriter(path, fps, (w, h)) as writer:
        for f in frames:
            writer.write(f)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_path):
    """Every broken (and every tricky but valid) input, made once."""
    d = tmp_path_factory.mktemp("bad")
    f = {}
    f["empty"] = d / "empty.jpg"
    f["empty"].write_bytes(b"")
    f["text"] = d / "notes.jpg"
    f["text"].write_text("this is not an image")
    good_jpg = d / "good.jpg"
    Image.fromarray(_face()).save(good_jpg, quality=90)
    f["trunc_jpg"] = d / "trunc.jpg"
    f["trunc_jpg"].write_bytes(good_jpg.read_bytes()[: good_jpg.stat().st_size // 2])
    good_png = d / "good.png"
    Image.fromarray(_face()).save(good_png)
    f["trunc_png"] = d / "trunc.png"
    f["trunc_png"].write_bytes(good_png.read_bytes()[:500])
    f["png16"] = d / "face16.png"
    Image.fromarray((_face()[..., 0].astype(np.uint16) * 257)).save(f["png16"])
    f["rgba"] = d / "face_rgba.png"
    Image.fromarray(np.dstack([_face(), np.full(_face().shape[:2], 255, np.uint8)])).save(f["rgba"])
    f["grey"] = d / "face_grey.png"
    Image.fromarray(_face()[..., 1]).save(f["grey"])
    f["huge"] = _png_claiming(d / "huge.png", 10000, 10000)
    f["bomb"] = _png_claiming(d / "bomb.png", 60000, 60000)
    frame = np.full((240, 320, 3), 180, np.uint8)
    frame[40:200, 80:240] = _face()
    f["face_frame"] = d / "frame.png"
    cv2.imwrite(str(f["face_frame"]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    f["clip"] = _clip(d / "face.mp4", [frame] * 12)
    f["trunc_mp4"] = d / "trunc.mp4"
    f["trunc_mp4"].write_bytes(f["clip"].read_bytes()[:400])
    f["no_frames"] = _clip(d / "noframes.mp4", [])
    f["no_face_clip"] = _clip(d / "noface.mp4", [np.full((240, 320, 3), 90, np.uint8)] * 12)
    two = np.full((240, 480, 3), 180, np.uint8)
    two[40:200, 40:200] = _face()
    two[40:200, 280:440] = _face()[:, ::-1]
    f["two_face_clip"] = _clip(d / "two.mp4", [two] * 12)
    f["two_face_photo"] = d / "two.png"
    cv2.imwrite(str(f["two_face_photo"]), cv2.cvtColor(two, cv2.COLOR_RGB2BGR))
    f["random_keras"] = d / "random.keras"
    f["random_keras"].write_bytes(np.random.default_rng(0).bytes(4096))
    import keras

    f["foreign_keras"] = d / "foreign.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(f["foreign_keras"])
    f["pairs_bad"] = d / "pairs.txt"
    f["pairs_bad"].write_text("1 1\nAlice 1 2\nAlice one Bob 2\n")
    f["schedule_bad"] = d / "schedule.txt"
    f["schedule_bad"].write_text("0: 0.1\n5 0.01\n")
    f["bad_gallery"] = d / "gallery.json"
    f["bad_gallery"].write_text('{"version": 1, "identities": [')
    f["missing_dir"] = d / "no_such_dir"
    f["dataset"] = d / "dataset"
    for person, flip in (("a", False), ("b", True)):
        (f["dataset"] / person).mkdir(parents=True)
        for k in range(2):
            img = _face()[:, ::-1] if flip else _face()
            Image.fromarray(np.roll(img, 3 * k, axis=0)).save(f["dataset"] / person / f"{k}.png")
    f["key"] = d / "challenge.key"
    from facelivenet.auth.tokens import load_key

    load_key(f["key"])
    # a gallery enrolled with another model
    from facelivenet.api import new_model
    from facelivenet.config import NetworkConfig

    other = d / "other.keras"
    new_model(NetworkConfig.from_preset("simple", image_size=80, embedding_size=32), seed=7).save(other)
    f["foreign_gallery"] = d / "foreign_gallery.json"
    res = _runner().invoke(cli, ["enroll", "astro", str(f["face_frame"]), "--gallery", str(f["foreign_gallery"]),
                                 "--model", str(other)])
    assert res.exit_code == 0, res.output
    f["model"] = tiny_model_path
    f["out"] = d / "out"
    f["out"].mkdir()
    return f


# (name, argv, fragment the one-line error must contain); {x} = files["x"]
ERROR_CASES = [
    ("zero-byte image", ["analyze", "--model", "{model}", "{empty}"], "empty.jpg: empty file"),
    ("text file named .jpg", ["analyze", "--model", "{model}", "{text}"], "notes.jpg: not a readable image"),
    ("truncated JPEG", ["analyze", "--model", "{model}", "{trunc_jpg}"], "trunc.jpg: corrupt image"),
    ("truncated PNG", ["analyze", "--model", "{model}", "{trunc_png}"], "trunc.png: corrupt image"),
    ("10000x10000 image", ["analyze", "--model", "{model}", "{huge}"], "huge.png: image is 10000x10000 pixels"),
    ("decompression bomb", ["analyze", "--model", "{model}", "{bomb}"], "bomb.png: image too large"),
    ("missing image", ["analyze", "--model", "{model}", "{out}/absent.png"], "absent.png: no such file"),
    ("random bytes .keras", ["info", "{random_keras}"], "random.keras: not a .keras model file"),
    ("Keras model not ours", ["info", "{foreign_keras}"], "foreign.keras: a Keras model of class Sequential"),
    ("missing model", ["analyze", "--model", "{out}/none.keras", "{grey}"], "none.keras: no such model file"),
    ("truncated MP4", ["verify-video", "{trunc_mp4}", "--model", "{model}", "--ref", "{face_frame}",
                       "--challenge", "happy"], "trunc.mp4: cannot open as a video"),
    ("video without frames", ["verify-video", "{no_frames}", "--model", "{model}", "--ref", "{face_frame}",
                              "--challenge", "happy"], "noframes.mp4"),
    ("video without a face", ["verify-video", "{no_face_clip}", "--model", "{model}", "--ref", "{face_frame}",
                              "--challenge", "happy", "--timeline", "{out}/t1.png"],
     "noface.mp4: no face found in any of its 12 analysed frames"),
    ("missing video", ["verify-video", "{out}/gone.mp4", "--model", "{model}", "--ref", "{face_frame}",
                       "--challenge", "happy"], "gone.mp4: no such file"),
    ("reference photo with two faces", ["verify-video", "{clip}", "--model", "{model}", "--ref", "{two_face_photo}",
                                        "--challenge", "happy"], "two.png: 2 faces found"),
    ("gallery from another model", ["verify-video", "{clip}", "--model", "{model}", "--gallery", "{foreign_gallery}",
                                    "--identity", "astro", "--challenge", "happy"], "foreign_gallery.json"),
    ("corrupt gallery", ["gallery", "list", "--gallery", "{bad_gallery}"], "gallery.json"),
    # (a token that does not parse is a reject, token_malformed: tests/test_verify_video.py)
    ("missing input directory", ["align", "{missing_dir}", "{out}/aligned"], "no_such_dir"),
    ("missing calibration directory", ["export", "--model", "{model}", "--format", "tflite-int8",
                                       "--calibration", "{missing_dir}", "--out", "{out}/m.tflite"], "no_such_dir"),
    ("malformed pairs file", ["train-verification", "--data", "{dataset}", "--out", "{out}/m.keras",
                              "--val-pairs", "{pairs_bad}", "--val-images", "{out}"], "pairs.txt:3"),
    ("malformed lr schedule", ["train-verification", "--data", "{dataset}", "--out", "{out}/m.keras",
                               "--lr-schedule", "{schedule_bad}"], "schedule.txt:2"),
    ("directory given as an image", ["enroll", "x", "{out}", "--gallery", "{out}/g.json", "--model", "{model}"],
     "out"),
]


@pytest.mark.parametrize("name, argv, fragment", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_is_a_one_line_error_with_exit_2(files, name, argv, fragment):
    before = set(os.listdir(files["out"]))
    args = [a.format(**files) for a in argv]
    res = _runner().invoke(cli, args)
    assert res.exit_code == 2, (name, res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    # Progress labels may precede it; the error itself is one line, the last one.
    assert len(errors) == 1 and lines[-1] == errors[0], (name, lines)
    assert fragment in errors[0], (name, errors[0])
    assert "Traceback" not in res.stderr and "Warning" not in res.stderr and res.stdout == ""
    assert set(os.listdir(files["out"])) == before, f"{name} left output behind"


@pytest.mark.parametrize("key", ["png16", "rgba", "grey"])
def test_16bit_rgba_and_grey_images_work(files, key):
    res = _runner().invoke(cli, ["analyze", "--model", str(files["model"]), "--cropped", str(files[key]), "--json"])
    assert res.exit_code == 0, res.output
    assert abs(json.loads(res.stdout)["faces"][0]["embedding_norm"] - 1) < 1e-4


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(files, tmp_path):
    p = tmp_path / "locked.png"
    p.write_bytes(files["grey"].read_bytes())
    p.chmod(0)
    res = _runner().invoke(cli, ["analyze", "--model", str(files["model"]), str(p)])
    assert res.exit_code == 2 and "permission denied" in res.stderr


def test_two_faces_throughout_is_a_reject_with_its_reason(files):
    res = _runner().invoke(cli, ["verify-video", str(files["two_face_clip"]), "--model", str(files["model"]),
                                 "--ref", str(files["face_frame"]), "--challenge", "happy", "--json", "--quiet"])
    assert res.exit_code == 1, res.output
    assert "multiple_faces" in [r["code"] for r in json.loads(res.stdout)["reasons"]]


@pytest.mark.parametrize("attack", ["expired", "tampered", "reused"])
def test_bad_tokens_are_rejects_with_exit_1(files, tmp_path, attack):
    import base64
    import time

    from facelivenet.auth.tokens import issue_token, load_key

    key = load_key(files["key"])
    nonce_db = tmp_path / "nonces.sqlite3"
    clock = (lambda: time.time() - 3600) if attack == "expired" else time.time
    token, _ = issue_token(key, ("happy",), 1, 60, clock=clock)
    if attack == "tampered":
        body, sig = token.rsplit(".", 1)
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload["expressions"] = ["surprise"]
        token = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=") + "." + sig
    args = ["verify-video", str(files["clip"]), "--model", str(files["model"]), "--ref", str(files["face_frame"]),
            "--token", token, "--key-file", str(files["key"]), "--nonce-db", str(nonce_db), "--json", "--quiet"]
    if attack == "reused":
        first = _runner().invoke(cli, args)
        assert first.exit_code == 1  # the still clip fails liveness, but the token is now used
    res = _runner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    codes = [r["code"] for r in json.loads(res.stdout)["reasons"]]
    assert codes == [f"token_{attack}"]
