"""Head-pose moves measured from the five detector landmarks (pure Python, no NumPy).

A challenge step may be a move instead of an expression: ``turn_left``, ``turn_right``
or ``chin_up``. We have no 3-D head model, only MTCNN's five points (left eye, right
eye, nose, mouth left, mouth right, in image coordinates, "left" = image left), and
two measures that need nothing else:

* **yaw**: the nose's offset from the midpoint of the eyes, along the eye line,
  divided by the inter-ocular distance. About 0 for a frontal face; the nose tip
  stands in front of the face plane, so it slides towards the side the head turns to.
  Positive = towards image right. ``turn_left`` asks for the person's own left as a
  (not mirrored) camera films them, which moves the nose towards image right.
* **pitch**: the nose's distance below the eye line (along the face's vertical axis,
  so a rolled head reads the same) divided by the inter-ocular distance. Raising the
  chin moves the nose tip up towards the eye line: the measure falls. The frontal
  value depends on the face (0.37 to 0.68 on our data), so ``chin_up`` compares with
  the person's own value on the Neutral frames. (The nose-to-eye over nose-to-mouth
  ratio was tried and dropped: an open mouth moves it as much as a raised chin.)

Each move is satisfied by a frame whose measure, against the Neutral baseline (the
median pose of the frames that completed Neutral), passes the move's threshold; the
engine asks for that on the step's minimum frames, like an expression. The baseline
must be frontal (``|yaw| <= FRONTAL_YAW``), or no move is ever shown.

Calibration (the figures are also in the README, "Head moves"): on every
frame of the four LivePortrait clips (1,161 frames of talking, smiling, surprise,
puffed cheeks, small head motions), relative to each clip's first 10 frames, yaw moved
at most 0.24 and the pitch measure fell to at least 0.81 of its baseline; frontal
faces (the 66 Taiwanese neutral studio images, the clips' first frames) read
|yaw| <= 0.071. On 300 LFW faces in the wild the yaw reads -0.49 to 0.50 (1st/99th
percentiles -0.32/0.44): turned faces do reach the threshold. Hence YAW_THRESHOLD
0.30 (about a 20-25 degree turn) and PITCH_THRESHOLD 0.75 (about 15 degrees up), both
beyond anything the clips showed without a deliberate move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

#: Move names a challenge may ask for (they are not expression classes of a model).
TURN_LEFT, TURN_RIGHT, CHIN_UP = "turn_left", "turn_right", "chin_up"
MOVES: tuple[str, ...] = (TURN_LEFT, TURN_RIGHT, CHIN_UP)

#: Relative-to-baseline thresholds: a turn needs yaw - yaw0 >= 0.30 in its direction;
#: chin_up needs pitch / pitch0 <= 0.75.
YAW_THRESHOLD = 0.30
PITCH_THRESHOLD = 0.75
#: The Neutral baseline is frontal when its |yaw| is at most this.
FRONTAL_YAW = 0.15
MOVE_THRESHOLDS: Mapping[str, float] = {TURN_LEFT: YAW_THRESHOLD, TURN_RIGHT: YAW_THRESHOLD,
                                        CHIN_UP: PITCH_THRESHOLD}


def is_move(name: str) -> bool:
    return name in MOVES


@dataclass(frozen=True)
class Pose:
    """A face's two landmark measures (see the module doc)."""

    yaw: float
    pitch: float

    def to_dict(self) -> dict[str, float]:
        return {"yaw": round(self.yaw, 4), "pitch": round(self.pitch, 4)}


def pose_from_landmarks(points: Sequence[Sequence[float]] | None) -> Pose | None:
    """The :class:`Pose` of five (x, y) landmarks, or None when they are missing or degenerate."""
    if points is None:
        return None
    try:
        pts = [(float(p[0]), float(p[1])) for p in points]
    except (TypeError, ValueError, IndexError):
        return None
    if len(pts) != 5 or not all(math.isfinite(v) for p in pts for v in p):
        return None
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = pts
    ex, ey = rx - lx, ry - ly
    iod = math.hypot(ex, ey)
    if iod <= 1e-6:
        return None
    ux, uy = ex / iod, ey / iod            # along the eye line
    vx, vy = -uy, ux                       # down the face (image y grows downwards)
    cx, cy = (lx + rx) / 2, (ly + ry) / 2  # eyes' midpoint
    yaw = ((nx - cx) * ux + (ny - cy) * uy) / iod
    nose_down = ((nx - cx) * vx + (ny - cy) * vy) / iod
    mouth_down = (((mlx + mrx) / 2 - cx) * vx + ((mly + mry) / 2 - cy) * vy) / iod
    if nose_down <= 1e-6 or mouth_down <= nose_down:  # not a face: nose not between eyes and mouth
        return None
    return Pose(yaw, nose_down)


def move_shown(move: str, pose: Pose | None, baseline: Pose | None) -> bool:
    """Whether ``pose`` shows ``move`` relative to the frontal ``baseline`` (None: not shown)."""
    if pose is None or baseline is None or abs(baseline.yaw) > FRONTAL_YAW:
        return False
    if move == TURN_LEFT:
        return pose.yaw - baseline.yaw >= YAW_THRESHOLD
    if move == TURN_RIGHT:
        return baseline.yaw - pose.yaw >= YAW_THRESHOLD
    if move == CHIN_UP:
        return baseline.pitch > 0 and pose.pitch / baseline.pitch <= PITCH_THRESHOLD
    raise ValueError(f"not a head move: {move!r}")


def median_pose(poses: Sequence[Pose]) -> Pose | None:
    """The per-measure median of ``poses`` (the Neutral baseline), None for none."""
    if not poses:
        return None
    return Pose(_median([p.yaw for p in poses]), _median([p.pitch for p in poses]))


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
