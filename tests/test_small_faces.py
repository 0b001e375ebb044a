"""Issue 19: a small second face in view is found (periodic full-resolution detection),
and a swap of the tracked person is an identity change, counted frame or not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facelivenet.auth.challenge import (
    Challenge, ChallengeSettings, FaceObservation, FrameObservation, ReasonCode, run_challenge,
)

FACES = Path(__file__).resolve().parent.parent / "data" / "parity-faces"
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _frame_with_a_small_second_face(side: int) -> np.ndarray:
    face = cv2.cvtColor(cv2.imread(str(FACES / "astronaut_centre.png")), cv2.COLOR_BGR2RGB)
    frame = np.full((480, 640, 3), 180, np.uint8)
    frame[100:340, 200:440] = cv2.resize(face, (240, 240))
    frame[30 : 30 + side, 560 : 560 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame


@pytest.mark.slow
def test_a_20_px_second_face_at_640x480_is_found(tiny_model):
    from facelivenet.auth.analyzer import FrameAnalyzer

    frame = _frame_with_a_small_second_face(34)  # the detector's box of the small face: ~20 px tall
    plain = FrameAnalyzer(tiny_model, full_check_every=0).analyze_batch([frame] * 5)
    assert [len(a.faces) for a in plain] == [1] * 5  # what the downscaled detection sees
    analyzer = FrameAnalyzer(tiny_model)
    looks = []  # the downscale of each detector call
    detect = analyzer.detector.detect
    analyzer.detector.detect = lambda image, downscale=1.0: looks.append(downscale) or detect(image, downscale=downscale)
    checked = analyzer.analyze_batch([frame] * 6)
    counts = [len(a.faces) for a in checked]
    assert counts == [2, 1, 1, 1, 1, 2]  # every 5th analysed frame is searched at full size
    assert looks == [1.0, 2.0, 2.0, 2.0, 2.0, 1.0]  # ... once: not downscaled as well
    small = [f for f in checked[0].faces if f.box[0] > 500][0]
    assert 15 <= small.box[3] - small.box[1] <= 26
    ref = checked[0].faces[0].embedding[None]
    obs = [a.observation(i / 30, ref, i) for i, a in enumerate(checked)]
    d = run_challenge(Challenge.for_clip(("happy",), 15.0), obs)
    assert d.codes == (ReasonCode.MULTIPLE_FACES,) and d.decided_frame == 0


def _obs(i, expr, distance, fps=30.0):
    probs = {c: (0.9 if c == expr else 0.1 / 6) for c in CLASSES}
    return FrameObservation(i / fps, [FaceObservation((100, 100, 200, 200), distance, probs)], index=i)


def test_a_splice_of_two_people_is_an_identity_change_before_any_counted_frame():
    # The enrolled person, not yet neutral (nothing counted), then another person: the
    # swap itself rejects, not only the missing neutral at the end.
    frames = [_obs(i, "happy", 0.3) for i in range(10)] + [_obs(10 + i, "neutral", 1.9) for i in range(40)]
    d = run_challenge(Challenge.for_clip(("surprise",), 15.0), frames, ChallengeSettings())
    assert d.codes == (ReasonCode.IDENTITY_CHANGED,)
    assert d.decided_frame == 10 + ChallengeSettings().identity_change_frames - 1


def test_a_face_that_never_matched_is_not_an_identity_change():
    frames = [_obs(i, "neutral", 1.9) for i in range(40)]
    d = run_challenge(Challenge.for_clip(("surprise",), 15.0), frames, ChallengeSettings())
    assert ReasonCode.IDENTITY_CHANGED not in d.codes and ReasonCode.NO_NEUTRAL in d.codes
    # Two matching frames (a wavering distance) do not establish an identity either.
    frames = [_obs(i, "happy", 0.3 if i in (3, 4) else 1.9) for i in range(40)]
    d = run_challenge(Challenge.for_clip(("surprise",), 15.0), frames, ChallengeSettings())
    assert ReasonCode.IDENTITY_CHANGED not in d.codes
