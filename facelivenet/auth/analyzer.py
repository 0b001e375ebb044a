"""Frame analysis: a frame → its faces with box, landmarks, aligned crop, embedding, expressions.

Detection may run on a downscaled copy of the frame (the original realtime demo used
1/3); boxes and landmarks are mapped back to the frame, and the crops are cut from
the full-resolution frame with the model's own alignment settings. All faces of a
frame go through the network in one batched forward.

A downscaled detection misses small faces (at 640x480 and 320 px, faces under ~26 px):
every :data:`FULL_CHECK_EVERY`-th analysed frame is searched at full resolution
instead, so a small second face in view is seen (and rejects as ``multiple_faces``)
within a few frames. That frame is detected once, at full resolution: its pyramid
holds every level the downscaled one has (and the finer ones below it), so a second,
downscaled detection of the same frame would only repeat part of the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from facelivenet.auth.challenge import FrameObservation
from facelivenet.auth.observe import frame_observation
from facelivenet.config import DETECT_MAX_SIDE
from facelivenet.faces import MIN_FACE_SCORE, FacePath
from facelivenet.preprocess import to_rgb

#: Every this many analysed frames, detection also runs at full resolution (small faces).
FULL_CHECK_EVERY = 5


@dataclass(frozen=True)
class FaceResult:
    """One face of a frame.

    Attributes:
        box: (x1, y1, x2, y2) in frame pixels.
        score: detector confidence.
        landmarks: (5, 2) left eye, right eye, nose, mouth left, mouth right.
        crop: (S, S, 3) uint8 aligned face fed to the network.
        embedding: (D,) unit embedding.
        expressions: (C,) probabilities in ``FrameAnalysis.classes`` order.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    crop: np.ndarray
    embedding: np.ndarray
    expressions: np.ndarray


@dataclass(frozen=True)
class FrameAnalysis:
    """Faces of one frame and where the time went (seconds)."""

    faces: tuple[FaceResult, ...]
    classes: tuple[str, ...]
    detect_seconds: float
    network_seconds: float

    def observation(self, timestamp: float, reference: np.ndarray, index: int | None = None) -> FrameObservation:
        """The challenge engine's view of this frame (identity distance to ``reference``)."""
        if not self.faces:
            empty = np.zeros((0, 0), np.float32)
            return frame_observation(timestamp, np.zeros((0, 4)), empty,
                                     np.zeros((0, len(self.classes)), np.float32), self.classes, reference, index)
        return frame_observation(
            timestamp,
            np.array([f.box for f in self.faces], np.float64),
            np.array([f.embedding for f in self.faces], np.float32),
            np.array([f.expressions for f in self.faces], np.float32),
            self.classes,
            reference,
            index,
            landmarks=[f.landmarks for f in self.faces],
        )


class FrameAnalyzer:
    """Detector + alignment + one batched network forward per frame.

    Args:
        model: a :class:`facelivenet.api.FaceModel`.
        detector: object with ``detect(rgb) -> list[Detection]``; default: ``FaceDetector()``.
        align: ``align(image, detection, image_size, mode, margin) -> crop``; default
            ``facelivenet.detect.align_face``.
        detect_max_side: frames whose longer side exceeds this are downscaled for
            detection, boxes mapped back by the detector (``None``: never).
        min_score: detections below this confidence are ignored.
        full_check_every: when frames are downscaled for detection, every this many
            analysed frames are searched at full resolution instead (0: never).
    """

    def __init__(self, model: Any, detector: Any = None, align: Callable[..., np.ndarray] | None = None,
                 *, detect_max_side: int | None = DETECT_MAX_SIDE, min_score: float = MIN_FACE_SCORE,
                 full_check_every: int = FULL_CHECK_EVERY):
        self.model = model
        self.full_check_every = int(full_check_every)
        self._frames = 0
        self.path = FacePath(model.config, detector, align, detect_max_side=detect_max_side, min_score=min_score)
        self.detector = self.path.detector
        self.detect_max_side = detect_max_side
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[Any]:
        """Detections (score >= ``min_score``) in full-frame pixels (the one face path's ``all``)."""
        return self.path.detect(image)

    def _full_check_due(self, image: np.ndarray) -> bool:
        every = self.full_check_every
        return (every > 0 and self._frames % every == 0 and bool(self.detect_max_side)
                and max(image.shape[:2]) > self.detect_max_side)

    def analyze(self, image: np.ndarray) -> FrameAnalysis:
        """Analyse one (H, W, 3) uint8 RGB frame (grey and RGBA are converted)."""
        return self.analyze_batch([image])[0]

    def analyze_batch(self, images: Sequence[np.ndarray]) -> list[FrameAnalysis]:
        """Analyse several frames: detection per frame, then ONE network forward for
        the faces of all of them (batching is 2-3x cheaper per face than batch 1 on CPU).

        The time of the shared forward is split between frames by their face counts.
        """
        images = [to_rgb(im) for im in images]
        dets, crops, detect_s = [], [], []
        for image in images:
            t0 = time.perf_counter()
            found = self.path.detect(image, full_resolution=self._full_check_due(image))
            self._frames += 1
            detect_s.append(time.perf_counter() - t0)
            dets.append(found)
            crops.extend(self.path.align(image, d) for d in found)
        t0 = time.perf_counter()
        result = self.model.analyze(np.stack(crops)) if crops else None
        network_s = time.perf_counter() - t0
        classes = tuple(self.model.expression_classes)
        out, k = [], 0
        for found, d_s in zip(dets, detect_s):
            faces = []
            for d in found:
                faces.append(FaceResult(
                    box=tuple(float(v) for v in d.box),
                    score=float(d.score),
                    landmarks=np.asarray(d.landmarks, np.float64),
                    crop=crops[k],
                    embedding=result.embeddings[k],
                    expressions=result.expressions[k],
                ))
                k += 1
            share = network_s * len(found) / len(crops) if crops else 0.0
            out.append(FrameAnalysis(tuple(faces), classes, d_s, share))
        return out
