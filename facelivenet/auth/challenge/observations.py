"""What the engine sees per frame (faces with box, identity distance, expressions) and box tracking."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from facelivenet.auth.challenge.pose import Pose
from facelivenet.auth.challenge.settings import Box, ChallengeSettings


@dataclass(frozen=True)
class FaceObservation:
    """One face in a frame, as the frame analyser sees it.

    Attributes:
        box: (x1, y1, x2, y2) in frame pixels.
        identity_distance: squared L2 distance of its embedding to the enrolled
            reference (the smallest over the reference's embeddings); ``None`` or NaN
            when unknown, which never matches.
        expressions: probability of each expression class, by name.
        pose: the landmark yaw/pitch measures (:mod:`.pose`), for head-move steps;
            None when unknown (a move is then never shown).
    """

    box: Box
    identity_distance: float | None
    expressions: Mapping[str, float]
    pose: Pose | None = None


@dataclass(frozen=True)
class FrameObservation:
    """All faces of one analysed frame.

    Attributes:
        timestamp: seconds, in the challenge's time base; never decreasing.
        faces: the faces detected in the frame.
        index: the frame's number in its source (for frame ranges); the count of
            observations so far when ``None``.
    """

    timestamp: float
    faces: Sequence[FaceObservation] = ()
    index: int | None = None


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def same_track(prev: Box, box: Box, settings: ChallengeSettings) -> bool:
    """Whether ``box`` continues the face seen at ``prev`` (see :class:`ChallengeSettings`)."""
    if box_iou(prev, box) >= settings.min_iou:
        return True
    side_prev, side = math.sqrt(_area(prev)), math.sqrt(_area(box))
    if side_prev <= 0 or side <= 0:
        return False
    ratio = side / side_prev
    if not 1.0 / settings.max_scale_change <= ratio <= settings.max_scale_change:
        return False
    cx0, cy0 = (prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2
    cx1, cy1 = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return math.hypot(cx1 - cx0, cy1 - cy0) <= settings.max_center_shift * side_prev
