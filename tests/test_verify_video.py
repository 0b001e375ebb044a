"""Video reading, the frame analyser and verify-video (offline challenge-response)."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facelivenet.auth.analyzer import FaceResult, FrameAnalysis, FrameAnalyzer
from facelivenet.auth.challenge import Challenge, ChallengeSettings
from facelivenet.auth.verify import verify_clip
from facelivenet.cli import cli
from facelivenet.errors import VideoReadError
from facelivenet.video import VideoSource, VideoWriter, read_frames

from conftest import assert_contract, shared_data

FACES = Path(__file__).resolve().parent.parent / "data" / "parity-faces"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:
        return CliRunner()


def _face_frame(shift: int = 0) -> np.ndarray:
    face = cv2.cvtColor(cv2.imread(str(FACES / "astronaut_centre.png")), cv2.COLOR_BGR2RGB)
    frame = np.full((320, 320, 3), 200, np.uint8)
    frame[80 + shift : 240 + shift, 80:240] = face
    return frame


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Path:
    """A 2-second, 10 fps clip of one still face with small shifts (a photo attack)."""
    path = tmp_path_factory.mktemp("clips") / "still.mp4"
    with VideoWriter(path, 10.0, (320, 320)) as w:
        for i in range(20):
            w.write(_face_frame(shift=(i % 3) - 1))
    return path


def test_video_frames_and_timestamps(face_clip):
    info, frames = read_frames(face_clip)
    assert (info.width, info.height, info.fps) == (320, 320, 10.0)
    assert len(frames) == 20 and frames[5].index == 5
    assert frames[5].timestamp == pytest.approx(0.5)
    assert frames[0].image.shape == (320, 320, 3) and frames[0].image.dtype == np.uint8
    info, strided = read_frames(face_clip, stride=3)
    assert [f.index for f in strided] == list(range(0, 20, 3))


def test_video_errors(tmp_path, face_clip):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(face_clip.read_bytes()[:300])
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    for path, fragment in [(tmp_path / "none.mp4", "no such file"), (tmp_path, "is a directory"),
                           (empty, "empty file"), (truncated, "cannot open"), (text, "cannot open")]:
        with pytest.raises(VideoReadError, match=fragment):
            VideoSource(path)


def test_video_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 10, (32, 32)) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_analyzer_finds_and_embeds_the_face(tiny_model):
    analyzer = FrameAnalyzer(tiny_model)
    fa = analyzer.analyze(_face_frame())
    assert len(fa.faces) == 1
    face = fa.faces[0]
    x1, y1, x2, y2 = face.box
    assert 60 < x1 < 130 and 60 < y1 < 130 and 190 < x2 < 260 and 190 < y2 < 260
    assert face.crop.shape == (80, 80, 3)
    assert face.embedding.shape == (32,) and abs(np.linalg.norm(face.embedding) - 1) < 1e-5
    assert face.expressions.shape == (7,)
    empty = analyzer.analyze(np.full((240, 320, 3), 128, np.uint8))
    assert empty.faces == ()


def test_batched_analysis_equals_one_by_one(tiny_model):
    analyzer = FrameAnalyzer(tiny_model)
    frames = [_face_frame(0), np.zeros((200, 200, 3), np.uint8), _face_frame(4)]
    batched = analyzer.analyze_batch(frames)
    single = [analyzer.analyze(f) for f in frames]
    assert [len(b.faces) for b in batched] == [1, 0, 1]
    for b, s in zip(batched, single):
        for fb, fs in zip(b.faces, s.faces):
            np.testing.assert_allclose(fb.embedding, fs.embedding, atol=1e-5)


class ScriptedAnalyzer:
    """Stands in for the detector + network: frame k shows ``script[k]`` = (expression, identity)."""

    class _Model:
        expression_classes = CLASSES

    model = _Model()

    def __init__(self, script, reference):
        self.script = script
        self.reference = reference
        self.k = 0

    def analyze_batch(self, images):
        out = []
        for _ in images:
            expr, same = self.script[min(self.k, len(self.script) - 1)]
            self.k += 1
            probs = np.full(len(CLASSES), 0.02, np.float32)
            probs[CLASSES.index(expr)] = 0.88
            emb = self.reference[0] if same else -self.reference[0]
            face = FaceResult((100, 100, 200, 200), 0.99, np.zeros((5, 2)), np.zeros((8, 8, 3), np.uint8), emb, probs)
            out.append(FrameAnalysis((face,), CLASSES, 0.0, 0.0))
        return out


def _script_clip(tmp_path, n):
    path = tmp_path / "scripted.mp4"
    with VideoWriter(path, 10.0, (64, 64)) as w:
        for _ in range(n):
            w.write(np.zeros((64, 64, 3), np.uint8))
    return path


def test_verify_clip_accepts_neutral_then_the_challenged_expression(tmp_path):
    ref = np.eye(4, dtype=np.float32)[:1]
    script = [("neutral", True)] * 8 + [("surprise", True)] * 6 + [("neutral", True)] * 4
    clip = _script_clip(tmp_path, len(script))
    result = verify_clip(clip, ScriptedAnalyzer(script, ref), ref, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert result.decision.accepted, result.decision.reasons
    assert [p.name for p in result.decision.phases] == ["neutral", "surprise"]
    # Decided on the fourth surprise frame (index 11, 0.3 s after the first): the rest is
    # neither decoded nor analysed.
    assert result.frames_analyzed == 12 and result.indices[-1] == 11 and result.stopped_early
    assert result.decision.phases[1].first_frame == 8


class TwoFaces(ScriptedAnalyzer):
    def analyze_batch(self, images):
        out = super().analyze_batch(images)
        return [FrameAnalysis(fa.faces * 2, fa.classes, 0.0, 0.0) for fa in out]


def test_verify_clip_stops_at_a_final_reject(tmp_path):
    ref = np.eye(4, dtype=np.float32)[:1]
    clip = _script_clip(tmp_path, 60)
    result = verify_clip(clip, TwoFaces([("neutral", True)], ref), ref, Challenge.for_clip(("happy",), 15.0),
                         ChallengeSettings())
    assert result.decision.codes == ("multiple_faces",)
    assert result.frames_analyzed == 1 and result.stopped_early


def test_verify_clip_without_any_face_reads_to_the_end(tmp_path):
    # No face at all is unusable input (the caller's error), not a no_face reject at 1.5 s.
    class NoFace(ScriptedAnalyzer):
        def analyze_batch(self, images):
            return [FrameAnalysis((), CLASSES, 0.0, 0.0) for _ in images]

    ref = np.eye(4, dtype=np.float32)[:1]
    result = verify_clip(_script_clip(tmp_path, 40), NoFace([("neutral", True)], ref), ref,
                         Challenge.for_clip(("happy",), 15.0), ChallengeSettings())
    assert result.frames_analyzed == 40 and not result.stopped_early


def test_verify_clip_rejects_an_identity_swap_at_the_expression(tmp_path):
    ref = np.eye(4, dtype=np.float32)[:1]
    script = [("neutral", True)] * 8 + [("surprise", False)] * 10
    clip = _script_clip(tmp_path, len(script))
    result = verify_clip(clip, ScriptedAnalyzer(script, ref), ref, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert not result.decision.accepted


def test_cli_photo_attack_is_rejected_with_a_full_report(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    timeline, annotated = tmp_path / "t.png", tmp_path / "a.mp4"
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy", "--json", "--timeline", str(timeline),
                                 "--annotate", str(annotated), "--quiet"])
    assert res.exit_code == 1, res.output
    report = assert_contract(json.loads(res.stdout))
    for key in ("decision", "reasons", "challenge", "identity", "liveness", "frames_analyzed", "fps"):
        assert key in report
    assert report["schema_version"] == "1.0" and report["clip"] == str(face_clip)
    assert 0 <= report["score"] < 0.5 and report["processing"]["frames_per_second"] > 0
    assert report["decision"] == "reject" and report["reasons"]
    assert report["frames_analyzed"] == 20 and report["fps"] == pytest.approx(10.0)
    assert report["challenge"]["expressions"] == ["happy"]
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_frames(annotated)[0].frame_count == 20


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--ref", "{ref}"], "give the challenge"),
        (["--ref", "{ref}", "--challenge", "happy", "--token", "x"], "give the challenge"),
        (["--challenge", "happy"], "say whom to verify"),
        (["--ref", "{ref}", "--gallery", "{ref}", "--challenge", "happy"], "not both"),
        (["--ref", "{ref}", "--challenge", "happy", "--timeline", "t.jpg"], "must be a .png"),
        (["--ref", "{ref}", "--challenge", "dance"], "dance"),
        (["--ref", "{tmp}/missing.png", "--challenge", "happy"], "missing.png: no such file"),
        (["--ref", "{blank}", "--challenge", "happy"], "no face found"),
        (["--ref", "{ref}", "--token", "not-a-token", "--key-file", "{tmp}/nokey"], "nokey: no such key file"),
    ],
)
def test_cli_usage_errors_exit_2(tiny_model_path, face_clip, tmp_path, args, fragment):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 90, np.uint8))
    from facelivenet.auth.tokens import load_key

    load_key(tmp_path / "key")
    args = [a.format(ref=ref, tmp=tmp_path, blank=blank) for a in args]
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr and "Traceback" not in res.stderr


def test_cli_bad_clip_exit_2(tiny_model_path, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 1000)
    res = _runner().invoke(cli, ["verify-video", str(bad), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy"])
    assert res.exit_code == 2 and "clip.mp4: cannot open as a video" in res.stderr


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_on_the_real_surprise_clip(tiny_model_path, tmp_path):
    clip = shared_data("videos", "d18.mp4")
    ref = tmp_path / "ref.png"
    ok, frame = cv2.VideoCapture(str(clip)).read()
    assert ok
    cv2.imwrite(str(ref), frame)
    res = _runner().invoke(cli, ["verify-video", str(clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "surprise", "--json", "--stride", "3", "--quiet",
                                 "--timeline", str(tmp_path / "t.png"), "--annotate", str(tmp_path / "a.mp4")])
    assert res.exit_code in (0, 1), res.output
    report = json.loads(res.stdout)
    assert report["frames_analyzed"] == 72 or (
        report["processing"]["stopped_at_decision"] and report["frames_analyzed"] < 72)
    # The clip shows one face, the same as the reference frame, throughout.
    assert report["identity"]["threshold"] > 0
    assert (tmp_path / "t.png").stat().st_size > 10_000
    assert read_frames(tmp_path / "a.mp4")[0].frame_count == 72


def test_enroll_detects_the_face_in_a_photo_and_verifies_against_the_gallery(tiny_model_path, face_clip, tmp_path):
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    gallery = tmp_path / "g.json"
    res = _runner().invoke(cli, ["enroll", "astro", str(photo), "--gallery", str(gallery), "--model",
                                 str(tiny_model_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == 1
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 90, np.uint8))
    res = _runner().invoke(cli, ["enroll", "astro", str(blank), "--gallery", str(gallery), "--model",
                                 str(tiny_model_path)])
    assert res.exit_code == 2 and "blank.png: no face found" in res.stderr
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--gallery",
                                 str(gallery), "--identity", "astro", "--challenge", "surprise", "--json", "--quiet"])
    assert res.exit_code == 1
    report = json.loads(res.stdout)
    # The still face is the enrolled one: identity matched on every frame, liveness failed.
    assert report["identity"]["all_frames"]["max"] < report["identity"]["threshold"]
    assert report["identity"]["matched_frames"] == report["identity"]["frames_with_face"] == 20


def test_realtime_headless_on_a_video_file_ends_with_a_decision(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["realtime", "--source", str(face_clip), "--model", str(tiny_model_path),
                                 "--ref", str(ref), "--headless", "--expressions", "happy"])
    assert res.exit_code == 1, res.output
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[0]["event"] == "challenge" and events[0]["expressions"] == ["happy"]
    assert events[1]["event"] == "state" and events[1]["state"] == "neutral"
    assert events[-1]["event"] == "decision" and events[-1]["decision"] == "reject"
    assert events[-1]["frames_analyzed"] == 20
    # The same contract as verify-video: reference, clip, fps and timings filled in.
    final = assert_contract(events[-1])
    assert final["identity"]["reference"] == {"ref": str(ref)} and final["clip"] == str(face_clip)
    assert final["fps"] == 10.0 and final["processing"]["frames_per_second"] > 0


def test_malformed_token_is_a_reject_like_a_tampered_one(tiny_model_path, face_clip, tmp_path):
    from facelivenet.auth.tokens import load_key

    load_key(tmp_path / "key")
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--token", "not-a-token", "--key-file", str(tmp_path / "key"),
                                 "--nonce-db", str(tmp_path / "n.db"), "--json"])
    assert res.exit_code == 1, res.output
    report = assert_contract(json.loads(res.stdout))
    assert [r["code"] for r in report["reasons"]] == ["token_malformed"]
    assert report["challenge"] is None and report["score"] == 0 and report["frames_analyzed"] == 0


def test_json_errors_are_json_on_stdout_with_exit_2(tiny_model_path, face_clip, tmp_path):
    # An error of ours (no face in the reference) and a usage error (unknown option).
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 90, np.uint8))
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(blank),
                                 "--challenge", "happy", "--json"])
    assert res.exit_code == 2
    doc = assert_contract(json.loads(res.stdout))
    assert doc["error"]["code"] == "face_count" and "no face found" in doc["error"]["message"]
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--json", "--no-such-option"])
    assert res.exit_code == 2
    doc = assert_contract(json.loads(res.stdout))
    assert doc["error"]["code"] == "usage" and "--no-such-option" in doc["error"]["message"]
    # Without --json: nothing on stdout, the one line on stderr.
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--no-such-option"])
    assert res.exit_code == 2 and res.stdout == "" and "--no-such-option" in res.stderr


def test_thresholds_from_the_command_line(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    base = ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
            "--challenge", "happy", "--json", "-q"]
    report = json.loads(_runner().invoke(cli, base + ["--threshold", "0.05", "--expression-threshold", "0.2"]).stdout)
    assert report["thresholds"]["identity"] == 0.05 and report["identity"]["threshold"] == 0.05
    assert report["thresholds"]["expression"] == report["thresholds"]["neutral"] == 0.2
    assert report["liveness"]["settings"]["expression_threshold"] == 0.2
    res = _runner().invoke(cli, base + ["--threshold", "5"])
    assert res.exit_code == 2 and "--threshold" in res.stderr


def test_realtime_device_gpu_without_a_gpu_is_a_clear_error(tiny_model_path, face_clip, tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    res = _runner().invoke(cli, ["realtime", "--source", str(face_clip), "--model", str(tiny_model_path),
                                 "--ref", str(face_clip), "--device", "GPU", "--headless"])
    assert res.exit_code == 2 and "sees no GPU" in res.stderr


def test_realtime_bad_source_is_an_error(tiny_model_path, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["realtime", "--source", str(tmp_path / "nope.mp4"), "--model", str(tiny_model_path),
                                 "--ref", str(ref), "--headless"])
    assert res.exit_code == 2 and "nope.mp4: no such file" in res.stderr


def test_realtime_without_a_display_says_so(tiny_model_path, face_clip, tmp_path, monkeypatch):
    """No DISPLAY on Linux: a one-line error instead of OpenCV's Qt aborting the process."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the DISPLAY check is Linux-only")
    monkeypatch.delenv("DISPLAY", raising=False)
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["realtime", "--source", str(face_clip), "--model", str(tiny_model_path),
                                 "--ref", str(ref)])
    assert res.exit_code == 2 and "no display" in res.stderr and "--headless" in res.stderr


@pytest.mark.slow
def test_realtime_window_on_a_virtual_display(tiny_model_path, face_clip, tmp_path):
    """The OpenCV window path (prompt, bars, banner) runs to a decision on Xvfb."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        proc = subprocess.run(
            [sys.executable, "-m", "facelivenet", "realtime", "--source", str(face_clip), "--model",
             str(tiny_model_path), "--ref", str(ref), "--expressions", "happy"],
            env={**os.environ, "DISPLAY": display}, capture_output=True, text=True, timeout=300,
        )
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.startswith("REJECT:")
    assert "challenge: neutral, then happy" in proc.stderr
    assert "QFontDatabase" not in proc.stderr


def test_overlay_text_is_drawn_once_inside_its_plate():
    from facelivenet.auth.render import draw_overlay, text_box

    bg = np.full((240, 640, 3), 140, np.uint8)
    status = "t= 1.23s  state=neutral  awaiting=neutral"
    out = draw_overlay(bg, (), (), (), 1.1, status=status)
    changed = np.argwhere(np.any(out != bg, axis=-1))
    ys, xs = changed[:, 0], changed[:, 1]
    scale = max(0.4, 240 / 900)
    x1, y1, x2, y2 = text_box(status, (8, 240 - 8), scale)
    # Every changed pixel is in the plate (a second, offset pass would spill out of it) ...
    assert xs.min() >= max(0, x1) and xs.max() < x2 and ys.min() >= max(0, y1) and ys.max() < min(240, y2)
    # ... and the glyphs (bright on the dark plate) span the width getTextSize gives, once.
    ink = np.argwhere(out[..., 0] > 160)
    (tw, _), _ = cv2.getTextSize(status, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    assert abs((ink[:, 1].max() - ink[:, 1].min() + 1) - tw) <= 3


def test_annotated_clip_is_h264_with_the_verdict_on_its_last_frames(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "a.mp4"
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy", "--json", "-q", "--annotate", str(out)])
    assert res.exit_code == 1, res.output
    report = assert_contract(json.loads(res.stdout))
    assert report["outputs"]["annotated"] == {"path": str(out), "codec": "h264"}
    data = out.read_bytes()
    assert data[4:8] == b"ftyp" and b"avc1" in data[:4096]
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: playable while it downloads
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 20
    # Decided at the end of the clip: the red REJECT banner is on the last second only.
    def red(f):
        return int(np.sum((f[..., 2] > 180) & (f[..., 1] < 90) & (f[..., 0] < 90)))
    assert red(frames[-1]) > 200 and red(frames[0]) < 20


def test_audit_images_of_each_completed_step(tmp_path):
    from facelivenet.auth.audit import write_audit
    from facelivenet.auth.challenge import FaceObservation, FrameObservation, run_challenge

    clip = tmp_path / "c.mp4"
    with VideoWriter(clip, 10.0, (320, 320)) as w:
        for i in range(30):
            w.write(_face_frame())

    def probs(expr, p):
        return {c: (p if c == expr else (1 - p) / 6) for c in CLASSES}

    obs = [FrameObservation(i / 10, [FaceObservation((80, 80, 240, 240), 0.2, probs("neutral", 0.7 + 0.01 * i))],
                            index=i) for i in range(12)]
    obs += [FrameObservation(i / 10, [FaceObservation((80, 80, 240, 240), 0.3, probs("happy", [0.6, 0.95, 0.7, 0.65][i - 12]))],
                             index=i) for i in range(12, 16)]  # happy held 0.3 s
    decision = run_challenge(Challenge.for_clip(("happy",), 10.0), obs)
    assert decision.accepted
    audit = write_audit(tmp_path / "audit", decision, clip, reference=(_face_frame(), (80, 80, 240, 240)))
    assert audit["reference"]["path"].endswith("reference.png")
    steps = [(f["phase"], f["frame"], round(f["probability"], 2)) for f in audit["frames"]]
    assert steps == [("neutral", 11, 0.81), ("happy", 13, 0.95)]
    for f in audit["frames"]:
        img = cv2.imread(f["path"])
        assert img.shape == (320, 320, 3)
        assert (img[80, 100:220, 1] > 150).mean() > 0.9  # the green box's top edge (a match)


def test_cli_audit_folder_is_listed_in_the_report(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy", "--json", "-q", "--audit", str(tmp_path / "audit")])
    assert res.exit_code == 1, res.output
    report = assert_contract(json.loads(res.stdout))
    assert Path(report["audit"]["reference"]["path"]).is_file()
    assert all(Path(f["path"]).is_file() for f in report["audit"]["frames"])
    (tmp_path / "afile").write_text("x")
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy", "--audit", str(tmp_path / "afile")])
    assert res.exit_code == 2


def test_one_challenge_vocabulary_in_verify_video_and_realtime(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    # verify-video draws a random challenge from --expressions/--length ...
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--expressions", "happy,surprise", "--length", "2", "--json", "-q"])
    assert res.exit_code == 1, res.output
    seq = json.loads(res.stdout)["challenge"]["expressions"]
    assert len(seq) == 2 and set(seq) <= {"happy", "surprise"}
    res = _runner().invoke(cli, ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--challenge", "happy", "--expressions", "happy"])
    assert res.exit_code == 2 and "give the challenge" in res.stderr
    # ... and realtime takes a fixed --challenge, and --json for the final decision.
    res = _runner().invoke(cli, ["realtime", "--source", str(face_clip), "--model", str(tiny_model_path),
                                 "--ref", str(ref), "--headless", "--challenge", "surprise,happy"])
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[0]["expressions"] == ["surprise", "happy"] and events[-1]["challenge"]["expressions"] == [
        "surprise", "happy"]


def test_a_camera_that_cannot_be_opened_is_one_line(tiny_model_path, tmp_path, capfd):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    res = _runner().invoke(cli, ["realtime", "--source", "7", "--model", str(tiny_model_path), "--ref", str(ref),
                                 "--headless"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: camera 7: cannot open the camera (no such device, in use, or no permission)"
    assert "cap_" not in capfd.readouterr().err  # nor OpenCV's own line on the real stderr


def test_output_paths_are_checked_before_any_work(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    before = face_clip.read_bytes()
    base = ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref), "--challenge", "happy"]
    link = tmp_path / "same.mp4"
    link.symlink_to(face_clip)
    res = _runner().invoke(cli, base + ["--annotate", str(link)])
    assert res.exit_code == 2 and "would overwrite it" in res.stderr
    res = _runner().invoke(cli, base + ["--timeline", str(ref.with_suffix(".png"))])
    assert res.exit_code == 2 and "is an input" in res.stderr
    assert face_clip.read_bytes() == before


def test_an_unwritable_output_folder_is_refused_first(tiny_model_path, face_clip, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    base = ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--ref", str(ref), "--challenge", "happy"]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("root writes anywhere")
        res = _runner().invoke(cli, base + ["--annotate", str(ro / "a.mp4")])
        assert res.exit_code == 2 and "not writable" in res.stderr
    finally:
        ro.chmod(0o700)


def test_a_still_image_or_a_raw_stream_given_as_a_clip(tiny_model_path, tmp_path):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    base = ["--model", str(tiny_model_path), "--ref", str(ref), "--challenge", "happy", "-q"]
    res = _runner().invoke(cli, ["verify-video", str(ref), *base])
    assert res.exit_code == 2 and "a single image, not a video clip" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # A raw MJPEG stream has no frame count in any header: its frames are counted.
    mjpeg = tmp_path / "raw.mjpeg"
    with open(mjpeg, "wb") as f:
        for i in range(12):
            f.write(cv2.imencode(".jpg", cv2.cvtColor(_face_frame(i % 3), cv2.COLOR_RGB2BGR))[1].tobytes())
    info = VideoSource(mjpeg).info
    assert info.frame_count == 12
    res = _runner().invoke(cli, ["verify-video", str(mjpeg), *base, "--json"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["frames_analyzed"] == 12


def test_bound_token_refuses_another_identity_and_a_second_nonce_db(tiny_model_path, face_clip, tmp_path):
    """challenge --identity binds the token: verify-video for someone else is a reject before any frame;
    for the right identity the clip is analysed and the token spent, also for a fresh --nonce-db."""
    face = tmp_path / "alice.png"
    cv2.imwrite(str(face), cv2.imread(str(FACES / "astronaut_centre.png")))
    other = tmp_path / "bob.png"
    cv2.imwrite(str(other), cv2.imread(str(FACES / "astronaut_centre.png"))[::-1].copy())
    gallery, key = tmp_path / "g.json", tmp_path / "keys" / "k.key"
    for name, img in (("alice", face), ("bob", other)):
        res = _runner().invoke(cli, ["enroll", name, str(img), "--gallery", str(gallery), "--cropped",
                                     "--model", str(tiny_model_path), "--force"])
        assert res.exit_code == 0, res.output
    res = _runner().invoke(cli, ["challenge", "--identity", "alice", "--gallery", str(gallery), "--model",
                                 str(tiny_model_path), "--key-file", str(key), "--expressions", "happy", "--json"])
    assert res.exit_code == 0, res.output
    issued = json.loads(res.stdout)
    assert issued["identity"] == "alice" and issued["model"].startswith("sha256:") and issued["gallery"]
    base = ["verify-video", str(face_clip), "--model", str(tiny_model_path), "--gallery", str(gallery),
            "--token", issued["token"], "--key-file", str(key), "--json", "--quiet"]
    res = _runner().invoke(cli, [*base, "--identity", "bob"])
    assert res.exit_code == 1, res.output
    report = assert_contract(json.loads(res.stdout))
    assert [r["code"] for r in report["reasons"]] == ["token_identity_mismatch"] and report["frames_analyzed"] == 0
    res = _runner().invoke(cli, [*base, "--identity", "alice", "--nonce-db", str(tmp_path / "one.db")])
    assert res.exit_code == 1, res.output  # a still photo fails liveness, but the token was accepted and spent
    report = json.loads(res.stdout)
    assert not any(r["code"].startswith("token_") for r in report["reasons"]) and report["frames_analyzed"] > 0
    res = _runner().invoke(cli, [*base, "--identity", "alice", "--nonce-db", str(tmp_path / "two.db")])
    assert res.exit_code == 1 and [r["code"] for r in json.loads(res.stdout)["reasons"]] == ["token_reused"]
    assert (key.parent / "k.key.used-nonces.sqlite3").is_file()
