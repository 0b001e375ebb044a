"""The challenge engine with scripted frames and a fake clock (no TensorFlow)."""

from __future__ import annotations

import json
import random

import pytest

from facelivenet.auth.challenge import (
    ACCEPTED, AWAIT_EXPRESSION, AWAIT_NEUTRAL, REJECTED, WAITING, Challenge, ChallengeEngine,
    ChallengeSettings, Decision, FaceObservation, FrameObservation, ReasonCode, box_iou,
    issue_challenge, parse_expression_list, random_sequence, run_challenge, same_track,
)
from facelivenet.errors import ChallengeError, ConfigError, InputError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
BOX = (100.0, 100.0, 200.0, 200.0)
FPS = 10.0
SETTINGS = ChallengeSettings(expression_min_duration=0.2)  # neutral: 5 frames over 0.5 s; expressions: 3 frames (0.2 s at 10 fps)


def probs(expr: str, p: float = 0.9) -> dict[str, float]:
    rest = (1.0 - p) / (len(CLASSES) - 1)
    return {c: (p if c == expr else rest) for c in CLASSES}


def face(expr="neutral", distance=0.3, box=BOX, p=0.9) -> FaceObservation:
    return FaceObservation(box=box, identity_distance=distance, expressions=probs(expr, p))


def script(*parts, start=0.0, fps=FPS):
    """Frames from (count, faces-or-callable) parts; faces is a face, a list of faces or None."""
    frames, i = [], 0
    for count, spec in parts:
        for _ in range(count):
            if spec is None:
                faces = []
            elif isinstance(spec, FaceObservation):
                faces = [spec]
            elif callable(spec):
                faces = spec(i)
            else:
                faces = list(spec)
            frames.append(FrameObservation(timestamp=start + i / fps, faces=faces, index=i))
            i += 1
    return frames


def clip(*expressions, time_limit=15.0):
    return Challenge.for_clip(expressions, time_limit)


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


# ------------------------------------------------------------------------------ accept


def test_neutral_then_expression_accepts_with_phases_and_trace():
    frames = script((8, face("neutral")), (2, face("sad", p=0.4)), (4, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert d.accepted and d.decision == "accept"
    assert d.codes == (ReasonCode.COMPLETED,)
    neutral, happy = d.phases
    assert (neutral.name, neutral.first_frame, neutral.last_frame, neutral.complete) == ("neutral", 0, 7, True)
    assert (happy.name, happy.first_frame, happy.last_frame, happy.frames) == ("happy", 10, 12, 3)
    assert d.decided_frame == 12
    assert len(d.trace) == 14  # frames after the decision are still traced
    assert [t.state for t in d.trace[:6]] == [AWAIT_NEUTRAL] * 5 + [AWAIT_EXPRESSION]
    assert d.trace[12].state == ACCEPTED and d.trace[13].state == ACCEPTED
    assert d.trace[0].counted_for == "neutral" and d.trace[8].counted_for is None
    assert d.trace[0].identity_distance == pytest.approx(0.3)
    assert d.trace[0].expressions["neutral"] == pytest.approx(0.9)
    json.dumps(d.to_dict())


def test_sequence_of_two_in_order():
    frames = script((6, face("neutral")), (3, face("happy")), (2, face("neutral")), (3, face("surprise")))
    d = run_challenge(clip("happy", "surprise"), frames, SETTINGS)
    assert d.accepted, d.reasons
    assert [p.name for p in d.phases] == ["neutral", "happy", "surprise"]


def test_sequence_in_wrong_order_rejects():
    frames = script((6, face("neutral")), (3, face("surprise")), (3, face("happy")))
    d = run_challenge(clip("happy", "surprise"), frames, SETTINGS)
    assert not d.accepted
    assert ReasonCode.WRONG_EXPRESSION in d.codes


def test_expression_before_neutral_does_not_count_but_later_answer_does():
    frames = script((4, face("happy")), (6, face("neutral")), (3, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert d.accepted
    assert d.phases[0].first_frame == 4 and d.phases[1].first_frame == 10


# ------------------------------------------------------------------------------ reject


def test_timeout_when_expression_never_comes():
    frames = script((6, face("neutral")), (200, face("neutral")))
    d = run_challenge(clip("happy", time_limit=10.0), frames, SETTINGS)
    assert not d.accepted
    assert d.codes[:2] == (ReasonCode.TIMEOUT, ReasonCode.EXPRESSION_NOT_SHOWN)
    assert d.decided_frame == 101  # first frame past t = 10 s
    assert d.phases[0].name == "neutral" and d.phases[0].complete


def test_answer_after_deadline_does_not_count():
    frames = script((6, face("neutral")), (100, face("neutral")), (5, face("happy")))
    d = run_challenge(clip("happy", time_limit=5.0), frames, SETTINGS)
    assert not d.accepted and d.codes[0] == ReasonCode.TIMEOUT


def test_wrong_expression_rejects():
    frames = script((6, face("neutral")), (3, face("surprise")), (3, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    assert d.codes == (ReasonCode.WRONG_EXPRESSION,)
    assert d.decided_frame == 8
    assert "surprise" in d.reasons[0].message


def test_wrong_expression_must_be_held_as_long_as_an_answer():
    # 30 fps, default settings: an answer needs 3 frames spanning 0.3 s (10 frames).
    defaults = ChallengeSettings()
    flicker = script((20, face("neutral")), (3, face("surprise")), (5, face("neutral")),
                     (12, face("happy")), fps=30.0)
    d = run_challenge(clip("happy"), flicker, defaults)
    assert d.accepted, d.reasons  # 3 frames = 0.067 s of Surprise answer nothing
    held = script((20, face("neutral")), (10, face("surprise")), (12, face("happy")), fps=30.0)
    d = run_challenge(clip("happy"), held, defaults)
    assert d.codes == (ReasonCode.WRONG_EXPRESSION,)
    assert d.decided_frame == 29  # frames 20-29 span 0.3 s
    assert "10 frames (0.30 s)" in d.reasons[0].message
    # The same 10 frames answer a Surprise challenge: what rejects is exactly what answers.
    assert run_challenge(clip("surprise"), held, defaults).accepted


def test_unguarded_expressions_on_the_way_do_not_reject():
    # Surprise is often read as fear for a few frames while the mouth opens.
    frames = script((6, face("neutral")), (5, face("fear")), (3, face("surprise")))
    assert run_challenge(clip("surprise"), frames, SETTINGS).accepted
    strict = SETTINGS.replace(guarded_expressions=("happy", "surprise", "fear"))
    d = run_challenge(clip("surprise"), frames, strict)
    assert d.codes == (ReasonCode.WRONG_EXPRESSION,)


def test_requested_expression_out_of_order_is_guarded_even_if_not_in_the_pool():
    frames = script((6, face("neutral")), (3, face("sad")), (3, face("angry")))
    d = run_challenge(clip("angry", "sad"), frames, SETTINGS)
    assert d.codes == (ReasonCode.WRONG_EXPRESSION,)


def test_no_neutral_first_rejects():
    frames = script((40, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    assert d.codes == (ReasonCode.INCOMPLETE, ReasonCode.NO_NEUTRAL)
    assert d.phases == ()
    assert all(t.counted_for is None for t in d.trace)


def calm(p_neutral: float, p_sad: float) -> FaceObservation:
    """A calm face as a vote-trained head reads it: Neutral and Sad share the mass."""
    rest = (1.0 - p_neutral - p_sad) / (len(CLASSES) - 2)
    expressions = {c: rest for c in CLASSES} | {"neutral": p_neutral, "sad": p_sad}
    return FaceObservation(box=BOX, identity_distance=0.3, expressions=expressions)


def test_neutral_threshold_counts_neutral_only_as_the_most_probable_class():
    low = SETTINGS.replace(neutral_threshold=0.35)
    # p(neutral) 0.42 with Sad at 0.3: Neutral at the calibrated threshold, not at 0.5.
    frames = script((8, calm(0.42, 0.3)), (4, face("happy")))
    assert run_challenge(clip("happy"), frames, low).accepted
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes
    # Sad more probable than Neutral: no Neutral, whatever the threshold.
    frames = script((8, calm(0.4, 0.45)), (4, face("happy")))
    d = run_challenge(clip("happy"), frames, low.replace(neutral_threshold=0.1))
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes
    # One frame never shows Neutral and the answer: a still whose p(neutral) passes a low
    # threshold while Surprise is on top answers nothing.
    still = FaceObservation(box=BOX, identity_distance=0.3, expressions={
        c: 0.0 for c in CLASSES} | {"neutral": 0.4, "surprise": 0.6})
    d = run_challenge(clip("surprise"), script((30, still)), low.replace(neutral_threshold=0.3))
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes


def test_neutral_too_short_in_time_does_not_count():
    # 10 frames at 100 fps span 0.09 s < 0.5 s.
    frames = script((10, face("neutral")), (5, face("happy")), fps=100.0)
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes


def test_neutral_interrupted_restarts_the_count():
    frames = script((4, face("neutral")), (1, face("sad")), (4, face("neutral")), (3, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes


def test_expression_before_issue_does_not_count():
    clock = FakeClock(1000.0)
    challenge = issue_challenge(("happy",), 1, time_limit=10.0, clock=clock)
    # A full neutral -> happy answer recorded before the issue, then nothing new.
    before = script((6, face("neutral")), (4, face("happy")), start=998.5)
    after = script((20, face("happy")), start=1000.0)
    after = [FrameObservation(f.timestamp, f.faces, index=100 + f.index) for f in after]
    engine = ChallengeEngine(challenge, SETTINGS, clock=clock)
    for f in before:
        assert engine.observe(f).state == WAITING
    for f in after:
        engine.observe(f)
    clock.t = 1002.0
    d = engine.finish(clock())
    assert not d.accepted
    assert ReasonCode.NO_NEUTRAL in d.codes
    assert all(t.counted_for is None for t in d.trace)


def test_neutral_before_issue_does_not_count_towards_the_minimum():
    clock = FakeClock(50.0)
    challenge = issue_challenge(("happy",), 1, clock=clock)
    frames = script((10, face("neutral")), (2, face("neutral")), (3, face("happy")), start=49.0)
    d = run_challenge(challenge, frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes


def test_identity_swap_between_phases_rejects():
    # Enrolled person's Neutral, then another person's expression in the same place.
    frames = script((6, face("neutral", 0.2)), (12, face("happy", 1.9)))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    assert d.codes == (ReasonCode.IDENTITY_CHANGED,)
    assert d.decided_frame == 6 + SETTINGS.identity_change_frames - 1
    assert all(t.counted_for != "happy" for t in d.trace)


def test_short_identity_swap_at_the_end_still_rejects_with_mismatch_reason():
    frames = script((6, face("neutral", 0.2)), (3, face("happy", 1.9)))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    assert d.codes == (ReasonCode.INCOMPLETE, ReasonCode.EXPRESSION_NOT_SHOWN, ReasonCode.IDENTITY_MISMATCH)


def test_wavering_identity_during_the_transition_is_tolerated():
    frames = script((6, face("neutral", 0.3)), (4, face("sad", 1.5, p=0.4)), (3, face("happy", 0.9)))
    assert run_challenge(clip("happy"), frames, SETTINGS).accepted


def test_impostor_never_counts():
    frames = script((10, face("neutral", 2.5)), (5, face("happy", 2.5)))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    assert d.codes == (ReasonCode.INCOMPLETE, ReasonCode.NO_NEUTRAL, ReasonCode.IDENTITY_MISMATCH)


def test_unknown_identity_distance_never_matches():
    frames = script((10, face("neutral", None)), (5, face("happy", float("nan"))))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes
    assert d.trace[0].identity_distance is None and d.trace[0].identity_match is False


def test_face_jump_rejects():
    far = (400.0, 300.0, 500.0, 400.0)
    frames = script((6, face("neutral")), (3, face("happy", box=far)))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and d.codes == (ReasonCode.FACE_JUMP,)
    assert d.decided_frame == 6


def test_small_motion_is_the_same_track():
    def moving(expr):
        return lambda i: [face(expr, box=(100.0 + 4 * i, 100.0 + 2 * i, 200.0 + 4 * i, 200.0 + 2 * i))]

    frames = script((6, moving("neutral")), (3, moving("happy")))
    assert run_challenge(clip("happy"), frames, SETTINGS).accepted


def test_same_track_rules():
    s = SETTINGS
    assert same_track(BOX, (110, 100, 210, 200), s)
    assert not same_track(BOX, (300, 100, 400, 200), s)
    assert not same_track(BOX, (100, 100, 400, 400), s)  # grew 3x
    assert box_iou(BOX, BOX) == 1.0 and box_iou(BOX, (300, 300, 310, 310)) == 0.0
    # Small faces moving fast: low IoU but a small centre shift still tracks.
    assert box_iou((0, 0, 10, 10), (3, 3, 13, 13)) < 0.5
    assert same_track((0, 0, 10, 10), (3, 0, 13, 10), s.replace(min_iou=0.9))


def test_two_faces_reject():
    other = face("neutral", 2.0, box=(300.0, 100.0, 400.0, 200.0))
    frames = script((6, face("neutral")), (1, [face("happy"), other]), (3, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and d.codes == (ReasonCode.MULTIPLE_FACES,)
    assert d.decided_frame == 6 and d.trace[6].faces == 2


def test_no_face_too_long_rejects_and_short_gap_does_not():
    long_gap = script((6, face("neutral")), (20, None), (3, face("happy")))
    d = run_challenge(clip("happy"), long_gap, SETTINGS)
    assert not d.accepted and d.codes == (ReasonCode.NO_FACE,)
    short_gap = script((6, face("neutral")), (5, None), (3, face("happy")))
    assert run_challenge(clip("happy"), short_gap, SETTINGS).accepted


def test_no_face_at_all():
    d = run_challenge(clip("happy"), script((30, None)), SETTINGS)
    assert not d.accepted and d.codes == (ReasonCode.NO_FACE,)


def test_gap_breaks_the_hold():
    frames = script((3, face("neutral")), (1, None), (3, face("neutral")), (3, face("happy")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted and ReasonCode.NO_NEUTRAL in d.codes


def test_rejection_lists_best_partial_phase():
    frames = script((6, face("neutral")), (2, face("happy")), (5, face("neutral")))
    d = run_challenge(clip("happy"), frames, SETTINGS)
    assert not d.accepted
    partial = d.phases[-1]
    assert (partial.name, partial.complete, partial.frames) == ("happy", False, 2)
    # The completed Neutral phase extends over the later neutral frames only up to the break.
    assert d.phases[0].last_frame == 5


# ------------------------------------------------------------------------------ live use


def test_live_engine_with_fake_clock_times_out_on_tick_and_reports_status():
    clock = FakeClock(0.0)
    challenge = issue_challenge(("happy",), 1, time_limit=3.0, clock=clock)
    engine = ChallengeEngine(challenge, SETTINGS, clock=clock, expression_classes=CLASSES)
    assert engine.state == WAITING
    for i in range(6):
        clock.t = i * 0.1
        engine.observe(FrameObservation(clock(), [face("neutral")]))
    st = engine.status()
    assert st.state == AWAIT_EXPRESSION and st.awaiting == "happy" and st.prompt == "now smile"
    assert st.time_left == pytest.approx(2.5)
    clock.t = 1.0
    assert engine.tick() is False
    clock.t = 1.0 + SETTINGS.max_no_face + 0.5  # the camera stalled: no frame, no face
    assert engine.tick() is True
    d = engine.finish()
    assert d.codes == (ReasonCode.NO_FACE,) and engine.state == REJECTED


def test_tick_past_deadline_is_timeout():
    clock = FakeClock(0.0)
    engine = ChallengeEngine(issue_challenge(("happy",), time_limit=2.0, clock=clock), SETTINGS.replace(max_no_face=60))
    engine.observe(FrameObservation(0.0, [face("neutral")]))
    assert engine.tick(2.5)
    assert engine.finish().codes[0] == ReasonCode.TIMEOUT


def test_finish_past_deadline_is_timeout_and_before_is_incomplete():
    frames = script((6, face("neutral")))
    assert run_challenge(clip("happy", time_limit=2.0), frames, end_time=5.0).codes[0] == ReasonCode.TIMEOUT
    assert run_challenge(clip("happy", time_limit=2.0), frames).codes[0] == ReasonCode.INCOMPLETE


def test_stop_when_decided_reads_no_further():
    consumed = []

    def gen():
        for f in script((6, face("neutral")), (3, face("happy")), (50, face("happy"))):
            consumed.append(f.index)
            yield f

    d = run_challenge(clip("happy"), gen(), SETTINGS, stop_when_decided=True)
    assert d.accepted and consumed[-1] == 8


# ------------------------------------------------------------------------------ inputs


def test_timestamps_must_not_go_back():
    engine = ChallengeEngine(clip("happy"))
    engine.observe(FrameObservation(1.0, []))
    with pytest.raises(ChallengeError, match="went back"):
        engine.observe(FrameObservation(0.5, []))


def test_missing_expression_class_is_an_error():
    with pytest.raises(ChallengeError, match="no expression class 'contempt'"):
        ChallengeEngine(clip("contempt"), expression_classes=CLASSES)
    engine = ChallengeEngine(clip("happy"))
    bad = FaceObservation(BOX, 0.1, {"happy": 0.9})
    with pytest.raises(ChallengeError, match="neutral"):
        engine.observe(FrameObservation(0.0, [bad]))


def test_bad_box_is_an_error():
    engine = ChallengeEngine(clip("happy"))
    with pytest.raises(InputError):
        engine.observe(FrameObservation(0.0, [FaceObservation((1, 2, 3), 0.1, probs("neutral"))]))


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    f = FaceObservation(tuple(np.float32(v) for v in BOX), np.float32(0.2),
                        {k: np.float32(v) for k, v in probs("neutral").items()})
    h = FaceObservation(BOX, np.float32(0.2), {k: np.float32(v) for k, v in probs("happy").items()})
    d = run_challenge(clip("happy"), script((6, f), (3, h)), SETTINGS)
    assert d.accepted
    json.dumps(d.to_dict())


def test_challenge_validation():
    with pytest.raises(ChallengeError, match="neutral"):
        Challenge(("neutral",), 0, 1)
    with pytest.raises(ChallengeError, match="twice in a row"):
        Challenge(("happy", "happy"), 0, 1)
    with pytest.raises(ChallengeError, match="deadline"):
        Challenge(("happy",), 5, 5)
    with pytest.raises(ChallengeError):
        Challenge((), 0, 1)
    with pytest.raises(ChallengeError):
        Challenge(("Happy!",), 0, 1)
    with pytest.raises(ChallengeError):
        Challenge("happy", 0, 1)
    c = Challenge(("happy", "surprise"), 10.0, 25.0, "n1")
    assert c.time_limit == 15.0 and c.prompt() == "neutral, then happy, then surprise"
    assert c.to_dict()["nonce"] == "n1"


def test_random_sequence():
    rng = random.Random(0)
    seqs = {random_sequence(("happy", "surprise"), 3, rng) for _ in range(20)}
    assert seqs <= {("happy", "surprise", "happy"), ("surprise", "happy", "surprise")}
    assert len(seqs) == 2
    drawn = {random_sequence() for _ in range(60)}  # secrets-based default
    assert drawn == {("happy",), ("surprise",)}
    with pytest.raises(ChallengeError, match="two to choose"):
        random_sequence(("happy",), 2)
    with pytest.raises(ChallengeError):
        random_sequence(("happy", "neutral"), 1)
    with pytest.raises(ChallengeError):
        random_sequence(("happy",), 0)


def test_issue_challenge_uses_clock_and_settings():
    c = issue_challenge(clock=FakeClock(7.0), settings=SETTINGS.replace(time_limit=4.0), rng=random.Random(1))
    assert (c.issued_at, c.deadline) == (7.0, 11.0)
    assert c.expressions in {("happy",), ("surprise",)}


def test_parse_expression_list():
    assert parse_expression_list(" Happy, surprise ") == ("happy", "surprise")
    for bad in ("", ",", "happy,happy", "neutral", "ha ppy"):
        with pytest.raises(ChallengeError):
            parse_expression_list(bad)


def test_settings_validation_and_for_model():
    with pytest.raises(ConfigError):
        ChallengeSettings(neutral_min_frames=0)
    with pytest.raises(ConfigError):
        ChallengeSettings(identity_threshold=5.0)
    with pytest.raises(ConfigError):
        ChallengeSettings(expression_threshold=0.0)
    with pytest.raises(ConfigError):
        ChallengeSettings(time_limit=float("inf"))
    with pytest.raises(ConfigError):
        ChallengeSettings(guarded_expressions="happy")
    assert ChallengeSettings(guarded_expressions=["happy"]).guarded_expressions == ("happy",)

    class Cfg:
        verification_threshold = 0.8
        expression_threshold = 0.6

    s = ChallengeSettings.for_model(Cfg(), expression_min_frames=5)
    assert (s.identity_threshold, s.expression_threshold, s.expression_min_frames) == (0.8, 0.6, 5)


def test_early_rejection_decision():
    d = Decision.rejected(clip("happy"), [], at=3.0)
    assert d.decision == "reject" and d.trace == () and d.phases == ()
