"""The face detector facade: ``FaceDetector(...).detect(image) -> list[Detection]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from facelivenet.detect import boxes as bx
from facelivenet.detect.stages import Candidates, ONetStage, PNetStage, RNetStage
from facelivenet.errors import InputError

#: Landmark order of :attr:`Detection.landmarks` (left/right as seen in the image).
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found in an image.

    Attributes:
        box: (x1, y1, x2, y2) floats in pixels of the input image, clipped to it.
        score: O-Net face probability in (0, 1].
        landmarks: (5, 2) float32 (x, y) points in pixels of the input image, in the
            order of :data:`LANDMARK_NAMES`.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0

    def to_dict(self) -> dict:
        """JSON-friendly form: box, score, landmarks as lists of floats."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


def as_detector_input(image) -> np.ndarray:
    """Validate a frame for detection → (H, W, 3) uint8 RGB.

    Accepts uint8 grey (H, W) or (H, W, 1), RGB and RGBA (alpha dropped). Raises
    :class:`InputError` for any other dtype or shape.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise InputError(
            f"the detector takes uint8 images (0..255); got dtype {img.dtype}. "
            "Read files with facelivenet.images.read_image"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or min(img.shape[:2]) == 0:
        raise InputError(
            f"the detector takes an H x W grey, H x W x 3 RGB or H x W x 4 RGBA image; "
            f"got an array of shape {np.asarray(image).shape}"
        )
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    return np.ascontiguousarray(img[:, :, :3])


class FaceDetector:
    """MTCNN face detector (P-Net → R-Net → O-Net) with the pretrained weights.

    Args:
        min_face_size: smallest face side to find, in pixels of the frame the cascade
            sees (>= 12).
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        scale_factor: ratio between pyramid levels, in [0.1, 1).

    The networks are loaded and compiled on first use (or by :meth:`load`), not by
    the constructor.
    """

    def __init__(
        self,
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
    ):
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t < 1.0 for t in thresholds):
            raise InputError(f"thresholds must be three probabilities in [0, 1). Received: thresholds={thresholds}")
        if not min_face_size >= 12:
            raise InputError(f"min_face_size must be >= 12 pixels. Received: min_face_size={min_face_size}")
        if not 0.1 <= scale_factor < 1.0:
            raise InputError(f"scale_factor must be in [0.1, 1). Received: scale_factor={scale_factor}")
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.scale_factor = float(scale_factor)
        self._stages: tuple[PNetStage, RNetStage, ONetStage] | None = None

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_face_size={self.min_face_size:g}, thresholds={self.thresholds}, "
            f"scale_factor={self.scale_factor})"
        )

    def load(self) -> "FaceDetector":
        """Load the weights and compile the networks now (else done by the first detect)."""
        if self._stages is None:
            from facelivenet.detect.compiled import build_runners

            runners = build_runners()
            t1, t2, t3 = self.thresholds
            self._stages = (PNetStage(runners, t1), RNetStage(runners, t2), ONetStage(runners, t3))
        return self

    def detect(self, image, *, downscale: float = 1.0) -> list[Detection]:
        """Faces in one image, best score first (empty list when there is none).

        Args:
            image: (H, W, 3) uint8 RGB (grey and RGBA are converted).
            downscale: run the cascade on the frame shrunk by this factor (>= 1), as the
                realtime path does, and map the results back to input pixels; faces
                then need ``min_face_size * downscale`` input pixels.
        """
        return self.detect_batch([image], downscale=downscale)[0]

    def detect_batch(self, images: Sequence, *, downscale: float = 1.0) -> list[list[Detection]]:
        """:meth:`detect` for many frames; frames of one shape share R-Net / O-Net calls.

        Args:
            images: a sequence of images, or an (N, H, W, C) array of frames.
        """
        if isinstance(images, np.ndarray) and images.ndim != 4:
            raise InputError(
                f"detect_batch takes a sequence of images or an (N, H, W, C) array; got an array of "
                f"shape {images.shape} (use detect for one image)"
            )
        if not downscale >= 1.0:
            raise InputError(f"downscale must be >= 1. Received: downscale={downscale}")
        frames = [as_detector_input(im) for im in images]
        small = [_shrink(f, downscale) for f in frames]
        results: list[list[Detection]] = [[] for _ in frames]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(small):
            by_shape.setdefault(f.shape[:2], []).append(i)
        for (height, width), members in by_shape.items():
            found = self._cascade(np.stack([small[i] for i in members]))
            for k, i in enumerate(members):
                results[i] = _to_detections(found.take(found.image_index == k), small[i].shape, frames[i].shape)
        return results

    def _cascade(self, batch: np.ndarray) -> Candidates:
        """P-Net → R-Net → O-Net on (B, H, W, 3) uint8 frames of one shape."""
        height, width = batch.shape[1:3]
        scales = bx.scale_pyramid(height, width, self.min_face_size, self.scale_factor)
        if not scales:
            return Candidates.empty()
        pnet, rnet, onet = self.load()._stages
        return onet(batch, rnet(batch, pnet(batch, scales)))


def _shrink(frame: np.ndarray, downscale: float) -> np.ndarray:
    if downscale == 1.0:
        return frame
    h, w = frame.shape[:2]
    size = (max(1, int(round(w / downscale))), max(1, int(round(h / downscale))))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _to_detections(found: Candidates, seen_shape, input_shape) -> list[Detection]:
    """Candidates of one frame (in the pixels the cascade saw) → input-pixel Detections."""
    (sh, sw), (ih, iw) = seen_shape[:2], input_shape[:2]
    boxes, landmarks = found.boxes, found.landmarks
    if (sh, sw) != (ih, iw):  # map pixel centres back: x_in = (x + 0.5) * iw / sw - 0.5
        factor = np.array([iw / sw, ih / sh])
        boxes = (boxes.reshape(-1, 2, 2) + 0.5) * factor - 0.5
        boxes = boxes.reshape(-1, 4)
        landmarks = (landmarks + 0.5) * factor - 0.5
    boxes = bx.clip_boxes(boxes, ih, iw)
    order = np.argsort(-found.scores, kind="stable")
    return [
        Detection(
            box=tuple(float(v) for v in boxes[j]),
            score=float(found.scores[j]),
            landmarks=landmarks[j].astype(np.float32),
        )
        for j in order
    ]
