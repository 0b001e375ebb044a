"""Following faces between full detections: :class:`TrackingDetector`.

On a clip the faces move little from frame to frame, so after a full cascade the
next frames only need the cheap last stages on the previous boxes: each box, grown a
little for the motion and made square, goes to R-Net (rescore and regress) and then
O-Net (final box, landmarks), as the cascade's own candidates would; P-Net and its
image pyramid, most of the cascade's time, are skipped.

The full cascade still runs

* every ``every``-th frame (the first of each period),
* when a followed face is lost (R-Net or O-Net no longer scores it a face, or two
  followed boxes merge),
* on a frame of another size (a new clip), and
* on a finer look than the call before (a smaller ``downscale``): the frame analyser
  searches every few frames at full resolution for small faces, the rest at 320 px. That
  search is the full cascade, and the tracks restart from it: its faces are a superset
  of the downscaled ones, and its boxes are the more precise. When the analyser's period
  and ``every`` agree, the full cascades of a clip are exactly its full-resolution
  searches (one cascade on those frames, not two).

The followed boxes are kept in frame pixels and followed on the frame itself (R-Net and
O-Net sample their 24/48 px patches from it), whatever ``downscale`` the call asks for:
the patches cost the same, and no downscaled copy of the frame is made.

Where the time goes: a followed frame costs one R-Net and one O-Net call on one patch
each (about 2 ms at 640x480, most of it the two ONNX Runtime calls); the average over a
period is dominated by its one full cascade (``every`` 5: 4/5 of the time).

Two-face rule: a second face that enters between full cascades is not seen by the
follow-up frames, which only look at the known boxes; it is seen at the next full
cascade, at most ``every - 1`` frames later, and the challenge engine rejects that
frame (``multiple_faces``). A second face in view for fewer frames than that may be
missed, so ``every`` bounds the shortest intrusion caught (5 frames: 1/6 s at 30 fps).
A face that jumps is lost by the follow-up (its old box holds no face) and found by
the full cascade, so the engine's face-jump rule sees it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facelivenet.detect import boxes as bx
from facelivenet.detect.detector import Detection, _shrink, _to_detections, as_detector_input
from facelivenet.detect.stages import Candidates
from facelivenet.errors import InputError
from facelivenet.faces import MIN_FACE_SCORE

#: Full cascade every this many frames by default.
DEFAULT_EVERY = 5
#: Each side of a followed box grows by this share of its size before R-Net sees it.
GROW = 0.1


class TrackingDetector:
    """A face detector for consecutive frames of one clip (``detect(image, downscale=)``).

    Args:
        detector: a :class:`facelivenet.detect.FaceDetector` (Keras or ONNX).
        every: full cascade every this many frames (1: always, no tracking).
        min_score: the score a followed face must keep (:data:`~facelivenet.faces.MIN_FACE_SCORE`).

    Attributes:
        full_runs, followed: frames that ran the full cascade / only the follow-up.
    """

    def __init__(self, detector: Any, every: int = DEFAULT_EVERY, *, min_score: float = MIN_FACE_SCORE):
        if not int(every) >= 1:
            raise InputError(f"tracking: a full detection every N frames needs N >= 1. Received: {every}")
        self.detector = detector
        self.every = int(every)
        self.min_score = float(min_score)
        self.reset()

    def __repr__(self) -> str:
        return f"TrackingDetector({self.detector!r}, every={self.every})"

    def reset(self) -> None:
        """Forget the tracks: the next frame runs the full cascade (a new clip)."""
        self._boxes: np.ndarray | None = None
        self._shape: tuple | None = None
        self._downscale: float | None = None
        self._since_full = 0
        self.full_runs = 0
        self.followed = 0

    def detect(self, image, *, downscale: float = 1.0) -> list[Detection]:
        """Faces of the next frame, best first, in its pixels (as ``FaceDetector.detect``)."""
        if not downscale >= 1.0:
            raise InputError(f"downscale must be >= 1. Received: downscale={downscale}")
        frame = as_detector_input(image)
        finer = self._downscale is not None and downscale < self._downscale
        fresh = (self._boxes is not None and len(self._boxes) > 0 and self._since_full < self.every
                 and frame.shape == self._shape and not finer)
        self._shape, self._downscale = frame.shape, float(downscale)
        found = self._follow(frame) if fresh else None
        if found is None:
            small = _shrink(frame, downscale)
            faces = _to_detections(self.detector.load()._cascade(small[None]), small.shape, frame.shape)
            self._boxes = np.array([d.box for d in faces if d.score >= self.min_score], np.float64).reshape(-1, 4)
            self._since_full = 1
            self.full_runs += 1
            return faces
        self.followed += 1
        self._since_full += 1
        self._boxes = found.boxes[found.scores >= self.min_score]
        return _to_detections(found, frame.shape, frame.shape)

    def _follow(self, frame: np.ndarray) -> Candidates | None:
        """R-Net then O-Net on the grown previous boxes; None when a face is lost."""
        _, rnet, onet = self.detector.load()._stages
        boxes = self._boxes
        size = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        grown = np.concatenate([boxes[:, :2] - GROW * size, boxes[:, 2:] + GROW * size], axis=1)
        n = len(boxes)
        start = Candidates(np.zeros(n, np.int64), bx.square_boxes(grown), np.ones(n))
        found = onet(frame[None], rnet(frame[None], start))
        if int(np.sum(found.scores >= self.min_score)) != n:
            return None
        return found
