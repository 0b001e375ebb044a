"""facelivenet demo: the photo attack on the astronaut portrait, the live mode on a file, errors.

The tiny model is untrained, so its expressions are arbitrary: the tests check what
holds whatever the network says (files, report structure, exit code consistent with the
decision, enrolment frame not judged), not the verdict itself.
"""

import json
import sys

import cv2
import numpy as np
import pytest

from facelivenet.auth.demo import astronaut_photo, photo_attack_frames
from facelivenet.cli import cli
from facelivenet.images import read_image
from facelivenet.video import VideoSource, VideoWriter


@pytest.fixture(scope="module")
def photo():
    return astronaut_photo()


def test_astronaut_photo(photo):
    assert photo.shape == (512, 512, 3) and photo.dtype == np.uint8


def test_photo_attack_frames_are_small_similarity_warps_of_the_photo(photo):
    frames = np.stack(list(photo_attack_frames(photo, seconds=2.0, fps=10, size=256)))
    assert frames.shape == (20, 256, 256, 3) and frames.dtype == np.uint8
    step = np.abs(frames[1:].astype(np.int16) - frames[:-1]).mean(axis=(1, 2, 3))
    assert (step > 0.5).all()  # it moves (or its exposure drifts) from every frame to the next
    # Every frame is the photo shifted <= 3 %, zoomed <= 8 %, tilted <= 2 degrees: its
    # centre is found near the frame centre, strongly correlated.
    small = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    patch = small[88:168, 88:168]
    for frame in frames:
        _, best, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(frame, patch, cv2.TM_CCOEFF_NORMED))
        assert best > 0.8 and abs(x - 88) <= 12 and abs(y - 88) <= 12
        assert 0.85 < frame.mean() / small.mean() < 1.15
    again = np.stack(list(photo_attack_frames(photo, seconds=2.0, fps=10, size=256)))
    np.testing.assert_array_equal(frames, again)
    other = next(photo_attack_frames(photo, seconds=2.0, fps=10, size=256, seed=7))
    assert not np.array_equal(frames[0], other)
    default = list(photo_attack_frames(photo))
    assert len(default) == 100 and default[0].shape == photo.shape
    assert next(photo_attack_frames(photo, 0.1, 10, size=(320, 240))).shape == (240, 320, 3)


def test_demo_runs_the_photo_attack_and_writes_its_files(runner, tiny_model_path, tmp_path, photo):
    out = tmp_path / "demo"
    res = runner.invoke(cli, ["demo", "--model", str(tiny_model_path), "--out", str(out), "--challenge", "happy",
                              "--json", "-q"])
    assert res.exit_code in (0, 1), res.output
    report = json.loads(res.stdout)
    assert res.exit_code == (0 if report["decision"] == "accept" else 1)
    if report["decision"] == "reject":
        assert report["reasons"]
    assert report["challenge"]["expressions"] == ["happy"]
    assert report["frames_analyzed"] == 100 and report["fps"] == pytest.approx(25.0)
    demo = report["demo"]
    assert demo["mode"] == "photo-attack" and demo["out"] == str(out)
    files = demo["files"]
    assert {k: v.rsplit("/", 1)[-1] for k, v in files.items()} == {
        "reference": "reference.png", "photo_attack": "photo-attack.mp4",
        "annotated": "annotated.mp4", "timeline": "timeline.png"}
    np.testing.assert_array_equal(read_image(files["reference"]), photo)
    assert VideoSource(files["photo_attack"]).info.frame_count == 100
    assert VideoSource(files["annotated"]).info.frame_count == 100
    with open(files["timeline"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    identity = demo["identity"]
    assert identity["threshold"] == report["identity"]["threshold"]
    assert 0 < identity["frames"] <= 100
    assert identity["matches"] == (identity["median_distance"] <= identity["threshold"])


def test_demo_human_summary_with_a_random_challenge(runner, tiny_model_path, tmp_path):
    out = tmp_path / "d"
    res = runner.invoke(cli, ["demo", "--model", str(tiny_model_path), "--out", str(out), "--expressions",
                              "surprise", "--detect-size", "160"])
    assert res.exit_code in (0, 1), res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ACCEPT: " if res.exit_code == 0 else "REJECT: ")
    assert "challenge: neutral, then surprise" in res.stdout
    assert any(line.startswith("identity: ") and "the enrolled photo (median distance" in line for line in lines)
    assert lines[-1].startswith(f"files in {out}/: reference.png, photo-attack.mp4")
    assert f"writing to {out}/" in res.stderr


def test_demo_live_on_a_file_enrols_from_its_first_frame(runner, tiny_model_path, tmp_path, photo, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the no-display fallback is decided by $DISPLAY on Linux")
    monkeypatch.delenv("DISPLAY", raising=False)  # never open a window in tests
    clip = tmp_path / "me.mp4"
    with VideoWriter(clip, 10.0, (256, 256)) as w:
        for frame in photo_attack_frames(photo, seconds=1.0, fps=10, size=256):
            w.write(frame)
    res = runner.invoke(cli, ["demo", "--source", str(clip), "--model", str(tiny_model_path), "--challenge",
                              "happy", "--json"])
    assert res.exit_code in (0, 1), res.output
    report = json.loads(res.stdout)
    assert res.exit_code == (0 if report["decision"] == "accept" else 1)
    assert report["challenge"]["expressions"] == ["happy"]
    assert report["identity"]["reference"]["frame"] == 0
    assert 1 <= report["frames_analyzed"] <= 9  # frame 0 enrolled the person and is not judged
    assert report["demo"]["mode"] == "live" and report["demo"]["enrollment"] == "first frame with one face"
    assert "enrolled the person from frame 0" in res.stderr and "no display: running headless" in res.stderr
    assert "challenge: neutral, then happy" in res.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--source", "{tmp}/missing.mp4"], "missing.mp4: no such file"),
        (["--out", "{tmp}/afile"], "afile: exists and is not a folder"),
        (["--source", "{tmp}/missing.mp4", "--out", "{tmp}/o"], "--out is for the photo-attack demo"),
        (["--ref", "{tmp}/afile"], "--ref is for the live demo"),
        (["--challenge", "dance", "--out", "{tmp}/o"], "dance"),
    ],
)
def test_demo_errors_exit_2(runner, tiny_model_path, tmp_path, args, fragment):
    (tmp_path / "afile").write_text("not a folder")
    args = [a.format(tmp=tmp_path) for a in args]
    res = runner.invoke(cli, ["demo", "--model", str(tiny_model_path), *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
