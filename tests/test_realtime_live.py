"""run_live on scripted frames: the clock is the frames' timestamps, the analyser is scripted."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from facelivenet.auth.analyzer import FaceResult, FrameAnalysis
from facelivenet.auth.challenge import ChallengeSettings, ReasonCode
from facelivenet.auth.realtime import run_live
from facelivenet.video import Frame

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
REF = np.eye(4, dtype=np.float32)[:1]


class ScriptedAnalyzer:
    """Returns, frame after frame, one face showing the scripted expression (identity = the reference)."""

    def __init__(self, script):
        self.script = list(script)
        self.model = SimpleNamespace(expression_classes=CLASSES)
        self.calls = 0

    def analyze(self, image):
        expr = self.script[self.calls]
        self.calls += 1
        if expr is None:
            return FrameAnalysis((), CLASSES, 0.0, 0.0)
        probs = np.full(len(CLASSES), 0.02, np.float32)
        probs[CLASSES.index(expr)] = 1.0 - 0.02 * (len(CLASSES) - 1)
        face = FaceResult((100.0, 100.0, 200.0, 200.0), 0.99, np.zeros((5, 2)), np.zeros((8, 8, 3), np.uint8),
                          REF[0], probs)
        return FrameAnalysis((face,), CLASSES, 0.0, 0.0)


def _frames(n, t0=1000.0, fps=10.0):
    image = np.zeros((4, 4, 3), np.uint8)
    return [Frame(i, t0 + i / fps, image) for i in range(n)]


def test_neutral_then_the_challenge_accepts_and_reports_events_in_frame_time():
    script = ["neutral"] * 10 + ["surprise"] * 10
    analyzer = ScriptedAnalyzer(script)
    events = []
    decision = run_live(_frames(len(script)), analyzer, REF, ChallengeSettings(), choices=("surprise",),
                        on_event=events.append, sequence=("surprise",))
    assert decision.accepted, decision.codes
    assert [e["event"] for e in events][0] == "challenge" and events[-1]["event"] == "decision"
    assert events[0]["t"] == 1000.0                                   # issued at the first frame's time
    states = [e["state"] for e in events if e["event"] == "state"]
    assert states[0] == "neutral" and "expression" in states
    assert analyzer.calls < len(script)                               # stops once decided


def test_random_challenge_uses_the_injected_rng():
    class First:
        def choice(self, seq):
            return seq[0]

    analyzer = ScriptedAnalyzer(["neutral"] * 10 + ["happy"] * 10)
    decision = run_live(_frames(20), analyzer, REF, ChallengeSettings(), choices=("happy", "surprise"), rng=First())
    assert decision.challenge.expressions == ("happy",) and decision.accepted


def test_the_deadline_is_measured_on_the_frames_clock():
    analyzer = ScriptedAnalyzer(["neutral"] * 400)
    settings = ChallengeSettings(time_limit=5.0)
    decision = run_live(_frames(400), analyzer, REF, settings, choices=("surprise",), sequence=("surprise",))
    assert not decision.accepted and ReasonCode.TIMEOUT in decision.codes
    assert 45 <= analyzer.calls <= 60                                 # ~5 s of 10 fps frames, not 400


def test_closing_the_window_cancels_with_its_reason():
    class ClosingWindow:
        shown = 0

        def show(self, frame, analysis, trace, status):
            ClosingWindow.shown += 1
            return ClosingWindow.shown < 3

        def final(self, frame, decision):
            self.final_decision = decision

    window = ClosingWindow()
    decision = run_live(_frames(20), ScriptedAnalyzer(["neutral"] * 20), REF, ChallengeSettings(),
                        choices=("surprise",), sequence=("surprise",), window=window)
    assert not decision.accepted and decision.codes == (ReasonCode.CANCELLED,)
    assert window.final_decision is decision


def test_live_audit_images_of_each_step(tmp_path):
    from PIL import Image

    script = ["neutral"] * 10 + ["surprise"] * 10
    frames = [Frame(f.index, f.timestamp, np.full((240, 320, 3), 10 * f.index, np.uint8)) for f in _frames(20)]
    events = []
    decision = run_live(frames, ScriptedAnalyzer(script), REF, ChallengeSettings(), choices=("surprise",),
                        on_event=events.append, sequence=("surprise",), audit_dir=tmp_path / "audit")
    assert decision.accepted
    audit = events[-1]["audit"]
    assert [f["phase"] for f in audit["frames"]] == ["neutral", "surprise"]
    for f in audit["frames"]:
        img = np.asarray(Image.open(f["path"]))
        # The saved picture is that frame's own (its grey level encodes its index).
        assert img.shape == (240, 320, 3) and int(img[5, 5, 0]) == 10 * f["frame"]
