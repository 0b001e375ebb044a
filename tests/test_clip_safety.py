"""Issue 19: clips that lie about time, stop decoding, have odd names; outputs that must
not follow planted links or outlive a SIGTERM. Scripted analysis (no TensorFlow)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from facelivenet.auth.challenge import (
    Challenge, ChallengeSettings, FaceObservation, FrameObservation, ReasonCode, run_challenge,
)
from facelivenet.auth.clipcheck import ClipTiming
from facelivenet.auth.verify import verify_clip
from facelivenet.video import VideoInfo, VideoSource, VideoWriter

from conftest import assert_contract
from test_verify_video import CLASSES, ScriptedAnalyzer

REPO = Path(__file__).resolve().parent.parent
REF = np.eye(4, dtype=np.float32)[:1]
GENUINE = [("neutral", True)] * 20 + [("surprise", True)] * 12 + [("neutral", True)] * 8


def _obs(t: float, expr: str, i: int) -> FrameObservation:
    probs = {c: (0.9 if c == expr else 0.1 / 6) for c in CLASSES}
    return FrameObservation(t, [FaceObservation((10, 10, 60, 60), 0.3, probs)], index=i)


def _clip(path: Path, n: int, fps: float, codec: str = "mp4v") -> Path:
    with VideoWriter(path, fps, (64, 64), codec=codec) as w:
        for k in range(n):
            w.write(np.full((64, 64, 3), (k * 7) % 255, np.uint8))
    return path


def test_a_three_frame_flash_at_120_fps_does_not_answer():
    # A still photo (neutral) with a 3-frame surprise flash, stamped at 120 fps: 25 ms.
    frames = [_obs(i / 120, "neutral", i) for i in range(80)]
    frames += [_obs((80 + k) / 120, "surprise", 80 + k) for k in range(3)]
    frames += [_obs((83 + k) / 120, "neutral", 83 + k) for k in range(40)]
    d = run_challenge(Challenge.for_clip(("surprise",), 15.0), frames, ChallengeSettings())
    assert not d.accepted and "expression_not_shown" in d.codes
    assert "0.3 s" in " ".join(r.message for r in d.reasons)
    # Held 0.3 s at 30 fps, the same expression answers.
    frames = [_obs(i / 30, "neutral", i) for i in range(20)] + [_obs((20 + k) / 30, "surprise", 20 + k)
                                                                 for k in range(10)]
    assert run_challenge(Challenge.for_clip(("surprise",), 15.0), frames, ChallengeSettings()).accepted


def test_a_clip_declaring_120_fps_is_refused_before_any_frame(tmp_path):
    clip = _clip(tmp_path / "fast.mp4", len(GENUINE), 120.0)
    result = verify_clip(clip, ScriptedAnalyzer(GENUINE, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert result.decision.codes == (ReasonCode.CLIP_TIMING,) and result.frames_analyzed == 0
    assert "120 fps" in result.decision.reasons[0].message
    # The same frames at 30 fps are answered.
    clip = _clip(tmp_path / "ok.mp4", len(GENUINE), 30.0)
    result = verify_clip(clip, ScriptedAnalyzer(GENUINE, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert result.decision.accepted, result.decision.reasons


def test_frame_times_come_from_the_container(tmp_path):
    clip = _clip(tmp_path / "c.mp4", 12, 24.0)
    frames = list(VideoSource(clip))
    assert [round(f.timestamp, 4) for f in frames] == [round(i / 24, 4) for i in range(12)]
    assert VideoSource(clip).info.declared_fps == 24.0


def test_timestamps_that_disagree_with_the_frame_count_are_refused():
    info = VideoInfo("x.mp4", 30.0, 64, 64, 300, False, 30.0)
    timing = ClipTiming(info)
    assert timing.frame(0, 0.0) is None and timing.frame(30, 1.0) is None
    r = timing.frame(60, 3.5)  # 1.5 s late at frame 60
    assert r is not None and r.code == ReasonCode.CLIP_TIMING and "disagree" in r.message
    timing = ClipTiming(info)
    timing.frame(10, 0.33)
    r = timing.frame(11, 0.33)
    assert r is not None and "does not come after" in r.message
    for fps in (0.0, 5.0, 61.0, 120.0):
        assert ClipTiming(VideoInfo("x", 30.0, 64, 64, 300, False, fps)).declared().code == ReasonCode.CLIP_TIMING
    assert ClipTiming(info).declared() is None


def test_a_clip_that_stops_decoding_mid_stream_is_clip_corrupt(tmp_path):
    clip = tmp_path / "whole.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(clip, 30.0, (64, 64)) as w:  # mp4v, its index at the end: the header keeps its count
        for _ in range(90):
            w.write(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = bytearray(clip.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)  # the middle third zeroed: decoding stops there
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(bytes(data))
    src = VideoSource(cut)
    assert src.info.frame_count == 90
    src.close()
    script = [("neutral", True)] * 90  # Neutral only: undecided when the frames run out
    result = verify_clip(cut, ScriptedAnalyzer(script, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert result.frames_analyzed < 80
    assert result.decision.codes == (ReasonCode.CLIP_CORRUPT,), result.decision.reasons
    assert f"after {result.frames_analyzed} of the 90 frames" in result.decision.reasons[0].message
    # The whole clip is decided on its frames, not as corrupt.
    result = verify_clip(clip, ScriptedAnalyzer(script, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert ReasonCode.CLIP_CORRUPT not in result.decision.codes
    # An answer complete before the corruption is no accept: the rest must decode too.
    late_cut = tmp_path / "late_cut.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) * 6 // 10 : len(data) * 8 // 10] = bytes(len(data) * 8 // 10 - len(data) * 6 // 10)
    late_cut.write_bytes(bytes(data))
    assert 30 < sum(1 for _ in VideoSource(late_cut)) < 80  # decodes past the answer, stops short of 90
    early = [("neutral", True)] * 16 + [("surprise", True)] * 12 + [("neutral", True)] * 62
    result = verify_clip(late_cut, ScriptedAnalyzer(early, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert not result.decision.accepted and result.decision.codes == (ReasonCode.CLIP_CORRUPT,)
    assert [p.name for p in result.decision.phases] == ["neutral", "surprise"]  # what was seen stays
    assert result.frames_analyzed == 26 and result.stopped_early  # frames 16-25 span 0.3 s
    whole = verify_clip(clip, ScriptedAnalyzer(early, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                        ChallengeSettings())
    assert whole.decision.accepted and whole.frames_analyzed == 26  # an intact clip: accepted at frame 25
    # Accepted on the very last frame that decodes: the count still rejects it.
    n = sum(1 for _ in VideoSource(late_cut))
    last = [("neutral", True)] * (n - 10) + [("surprise", True)] * 10 + [("neutral", True)] * (90 - n)
    result = verify_clip(late_cut, ScriptedAnalyzer(last, REF), REF, Challenge.for_clip(("surprise",), 15.0),
                         ChallengeSettings())
    assert result.frames_analyzed == n and result.decision.codes == (ReasonCode.CLIP_CORRUPT,)
    assert run_challenge(Challenge.for_clip(("surprise",), 15.0),
                         [_obs(i / 30, e, i) for i, (e, _) in enumerate(last[:n])], ChallengeSettings()).accepted


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_file_name_that_is_not_utf8_is_read_and_written(tmp_path):
    # OpenCV 5's path binding segfaulted on such names; in a child process, so a crash is a failure.
    res = _python("""
        import os, numpy as np
        from facelivenet.video import VideoSource, VideoWriter
        folder = os.fsdecode(b"dir-\\xff")
        os.mkdir(folder)
        path = os.path.join(folder, os.fsdecode(b"clip-\\xfe.mp4"))
        for codec in ("mp4v", "h264"):
            with VideoWriter(path, 20.0, (64, 64), codec=codec) as w:
                for k in range(10):
                    w.write(np.full((64, 64, 3), 20 * k, np.uint8))
            src = VideoSource(path)
            print(codec, src.info.frame_count, len(list(src)), sorted(os.listdir(folder)) == [os.path.basename(path)])
    """, tmp_path)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.split("\n")[:2] == ["mp4v 10 10 True", "h264 10 10 True"]
    assert not [p for p in Path("/tmp").glob("facelivenet-*") if p.stat().st_mtime > tmp_path.stat().st_mtime]


def test_the_writer_never_follows_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "a.mp4"
    (tmp_path / ".a.mp4.part.mp4").symlink_to(victim)  # the name the writer used to use
    with VideoWriter(out, 10.0, (32, 32)) as w:
        for _ in range(5):
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert victim.read_text() == "precious"
    assert VideoSource(out).info.frame_count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.mp4.part.mp4", "a.mp4", "victim.txt"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_sigterm_while_writing_leaves_no_partial_file(tmp_path):
    res = _python("""
        import os, signal, numpy as np
        from facelivenet.video import VideoWriter
        with VideoWriter("out.mp4", 10.0, (64, 64), codec="auto") as w:
            for k in range(30):
                w.write(np.zeros((64, 64, 3), np.uint8))
                if k == 10:
                    os.kill(os.getpid(), signal.SIGTERM)
        print("not reached")
    """, tmp_path)
    assert res.returncode == 143 and "not reached" not in res.stdout, res.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def _cli(args):
    from click.testing import CliRunner

    from facelivenet.cli import cli

    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, args)


def test_a_malformed_token_is_refused_before_the_model_loads(tmp_path):
    from facelivenet.auth.tokens import load_key

    load_key(tmp_path / "key")
    clip = _clip(tmp_path / "c.mp4", 20, 30.0)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")  # loading it would fail: the token is looked at first
    ref = tmp_path / "ref.png"
    ref.write_bytes(b"not read either")
    res = _cli(["verify-video", str(clip), "--model", str(broken), "--ref", str(ref), "--token", "garbage",
                "--key-file", str(tmp_path / "key"), "--nonce-db", str(tmp_path / "n.db"), "--json"])
    assert res.exit_code == 1, res.output
    import json

    assert [r["code"] for r in json.loads(res.stdout)["reasons"]] == ["token_malformed"]


def test_a_nonce_store_that_cannot_be_written_is_refused_before_the_analysis(tmp_path):
    from facelivenet.auth.tokens import issue_token, load_key

    key = load_key(tmp_path / "key")
    token, _ = issue_token(key, ("happy",), 1, 60)
    clip = _clip(tmp_path / "c.mp4", 20, 30.0)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    res = _cli(["verify-video", str(clip), "--model", str(broken), "--ref", str(clip), "--token", token,
                "--key-file", str(tmp_path / "key"), "--nonce-db", str(blocker / "n.db")])
    assert res.exit_code == 2 and "nonce store" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    ro = tmp_path / "ro.db"
    ro.write_bytes(b"")
    ro.chmod(0o400)
    if os.access(ro, os.W_OK):
        return  # root writes anywhere: the read-only file case cannot be made here
    res = _cli(["verify-video", str(clip), "--model", str(broken), "--ref", str(clip), "--token", token,
                "--key-file", str(tmp_path / "key"), "--nonce-db", str(ro)])
    assert res.exit_code == 2 and "nonce store is not writable" in res.stderr, res.output


def test_usage_errors_and_library_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    res = _cli(["verify-video", "--bogus", "x"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "Error: No such option '--bogus'. (see 'cli verify-video --help')"
    res = _cli(["verify-video", "c.mp4", "--stride", "0"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "--stride" in res.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Skipping variable loading for optimizer 'adam'\n  because it has 12 variables", UserWarning)
    assert capsys.readouterr().err == "warning: Skipping variable loading for optimizer 'adam'\n"


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["error", "sigterm"])
def test_an_output_failing_after_the_decision_still_prints_it(tiny_model_path, tmp_path, monkeypatch, failure):
    import json

    import cv2

    from facelivenet.cli import verify_cmds
    from test_verify_video import _face_frame

    clip = tmp_path / "still.mp4"
    with VideoWriter(clip, 10.0, (320, 320)) as w:
        for i in range(20):
            w.write(_face_frame(shift=(i % 3) - 1))
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    real = verify_cmds.write_annotated

    def broken_timeline(*a, **k):
        raise OSError(28, "No space left on device")

    def terminated_annotation(path, *a, **k):
        def kill(*args, **kw):
            raise SystemExit(143)  # what VideoWriter's SIGTERM handler raises
        monkeypatch.setattr(VideoWriter, "write", kill)
        return real(path, *a, **k)

    if failure == "error":
        monkeypatch.setattr(verify_cmds, "write_timeline", broken_timeline)
    else:
        monkeypatch.setattr(verify_cmds, "write_annotated", terminated_annotation)
    res = _cli(["verify-video", str(clip), "--model", str(tiny_model_path), "--ref", str(ref), "--challenge",
                "happy", "--timeline", str(tmp_path / "t.png"), "--annotate", str(tmp_path / "a.mp4"), "--json"])
    report = assert_contract(json.loads(res.stdout))
    assert report["decision"] == "reject"
    if failure == "error":
        assert res.exit_code == 1
        assert report["outputs"]["errors"] == {"timeline": "OSError: [Errno 28] No space left on device"}
        assert report["outputs"]["annotated"]["path"] == str(tmp_path / "a.mp4")
        assert "the timeline output was not written" in res.stderr
    else:
        assert res.exit_code == 143
        assert report["outputs"]["errors"] == {"annotated": "interrupted"}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png", "still.mp4", "t.png"]  # no .part.mp4


@pytest.mark.slow
def test_verify_video_with_file_names_that_are_not_utf8(tiny_model_path, tmp_path):
    import json

    import cv2

    from test_verify_video import _face_frame

    folder = os.fsencode(tmp_path) + b"/d\xff"
    os.mkdir(folder)
    clip, ref, out = folder + b"/clip\xfe.mp4", folder + b"/ref\xfe.png", folder + b"/out\xfd.mp4"
    with VideoWriter(os.fsdecode(clip), 10.0, (320, 320)) as w:
        for i in range(12):
            w.write(_face_frame(shift=(i % 3) - 1))
    ok, png = cv2.imencode(".png", cv2.cvtColor(_face_frame(), cv2.COLOR_RGB2BGR))
    with open(ref, "wb") as f:
        f.write(png.tobytes())
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-m", "facelivenet", "verify-video", clip, "--model", str(tiny_model_path),
                          "--ref", ref, "--challenge", "happy", "--annotate", out, "--json", "-q"],
                         env=env, capture_output=True, timeout=300)
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])  # a reject, not a segfault (-11)
    report = json.loads(res.stdout)
    assert report["decision"] == "reject" and report["frames_analyzed"] > 0
    assert report["outputs"]["annotated"]["path"] == os.fsdecode(out)  # JSON escapes the odd bytes
    assert VideoSource(os.fsdecode(out)).info.frame_count == 12
