"""Property tests of the engine (hypothesis) and the analyser → observation bridge."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelivenet.auth.challenge import (
    NEUTRAL, Challenge, ChallengeEngine, ChallengeSettings, FaceObservation, FrameObservation, run_challenge,
)
from facelivenet.auth.observe import frame_observation
from facelivenet.errors import InputError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
S = ChallengeSettings(neutral_min_frames=3, neutral_min_duration=0.2)

_face = st.builds(
    lambda expr, p, distance, dx, scale: FaceObservation(
        (100 + dx, 100 + dx, 200 + dx * scale, 200 + dx * scale), distance,
        {c: (p if c == expr else (1 - p) / 6) for c in CLASSES}),
    st.sampled_from(["neutral", "neutral", "happy", "surprise", "fear"]),
    st.floats(0.2, 1.0), st.sampled_from([0.1, 0.5, 1.0, 2.0, None]),
    st.sampled_from([0, 0, 0, 5, 150]), st.sampled_from([1.0, 1.0, 3.0]),
)
_frame_faces = st.one_of(st.just([]), st.lists(_face, min_size=1, max_size=1),
                         st.lists(_face, min_size=2, max_size=2))
_script = st.lists(st.tuples(st.integers(1, 6), _frame_faces), min_size=1, max_size=12)


def _good(expr, distance=0.2):
    return [FaceObservation((100, 100, 200, 200), distance,
                            {c: (0.9 if c == expr else 0.1 / 6) for c in CLASSES})]


@st.composite
def _answers(draw, expressions):
    """Near-valid answers: each required step in order, with random segments mixed in."""
    parts = []
    for name in (NEUTRAL,) + expressions:
        if draw(st.integers(0, 9)) < 3:
            parts.append((draw(st.integers(1, 4)), draw(_frame_faces)))
        distance = draw(st.sampled_from([0.2, 0.2, 0.2, 0.2, 1.0, 2.0]))
        parts.append((draw(st.integers(1, 8)), _good(name, distance)))
    if draw(st.booleans()):
        parts.append((draw(st.integers(1, 4)), draw(_frame_faces)))
    return parts


_EXPRESSIONS = st.sampled_from([("happy",), ("surprise",), ("happy", "surprise")])


@st.composite
def _cases(draw):
    expressions = draw(_EXPRESSIONS)
    parts = draw(st.one_of(_script, _answers(expressions)))
    return parts, expressions


@settings(max_examples=400, deadline=None)
@given(_cases(), st.sampled_from([5.0, 10.0, 30.0]), st.floats(-1.0, 1.0))
def test_an_accept_always_satisfies_every_rule(case, fps, issued_at):
    parts, expressions = case
    challenge = Challenge(expressions, issued_at, issued_at + 3.0)
    frames, i = [], 0
    for count, faces in parts:
        for _ in range(count):
            frames.append(FrameObservation(i / fps, faces, index=i))
            i += 1
    d = run_challenge(challenge, frames, S)
    assert d.reasons and len(d.trace) == len(frames)
    if not d.accepted:
        return
    required = (NEUTRAL,) + expressions
    assert [p.name for p in d.phases] == list(required)
    assert all(p.complete for p in d.phases)
    assert d.phases[0].frames >= S.neutral_min_frames
    assert d.phases[0].end - d.phases[0].start >= S.neutral_min_duration - 1e-9  # frame times are floats
    assert all(p.frames >= S.expression_min_frames for p in d.phases[1:])
    assert all(p.end - p.start >= S.expression_min_duration - 1e-9 for p in d.phases[1:])
    assert all(a.last_frame < b.first_frame for a, b in zip(d.phases, d.phases[1:]))
    window = [t for t in d.trace if issued_at <= t.timestamp and t.index <= d.decided_frame]
    assert all(t.faces <= 1 for t in window)
    assert challenge.issued_at <= d.phases[0].start and d.decided_at <= challenge.deadline
    counted = [t for t in d.trace if t.counted_for]
    assert counted and all(t.identity_match for t in counted)
    for t in counted:
        threshold = S.neutral_threshold if t.counted_for == NEUTRAL else S.expression_threshold
        assert t.expressions[t.counted_for] >= threshold


@settings(max_examples=100, deadline=None)
@given(_script)
def test_engine_never_crashes_and_decides_once(parts):
    engine = ChallengeEngine(Challenge(("happy",), 0.0, 2.0))
    t = 0.0
    first = None
    for count, faces in parts:
        for _ in range(count):
            engine.observe(FrameObservation(t, faces))
            if engine.decided and first is None:
                first = engine.decision()
            t += 0.1
    final = engine.finish()
    if first is not None:
        assert (final.accepted, final.reasons, final.decided_at) == (first.accepted, first.reasons, first.decided_at)
    assert engine.status(t).state in ("accept", "reject")


def test_frame_observation_from_analysis(rng):
    ref = rng.normal(size=(2, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    emb = np.stack([ref[1], -ref[0]])
    probs = np.full((2, 7), 1 / 7, np.float32)
    obs = frame_observation(1.5, [[0, 0, 10, 10], [20, 20, 40, 40]], emb, probs, CLASSES, ref, index=45)
    assert obs.timestamp == 1.5 and obs.index == 45 and len(obs.faces) == 2
    assert obs.faces[0].identity_distance == pytest.approx(0.0, abs=1e-5)
    assert obs.faces[1].identity_distance > 1.0
    assert obs.faces[0].expressions["neutral"] == pytest.approx(1 / 7)
    assert obs.faces[1].box == (20.0, 20.0, 40.0, 40.0)
    empty = frame_observation(2.0, np.zeros((0, 4)), np.zeros((0, 8)), np.zeros((0, 7)), CLASSES, ref)
    assert empty.faces == []
    with pytest.raises(InputError):
        frame_observation(0, [[0, 0, 1, 1]], emb, probs, CLASSES, ref)
    with pytest.raises(InputError):
        frame_observation(0, [[0, 0, 1, 1]], emb[:1], probs[:1, :5], CLASSES, ref)
