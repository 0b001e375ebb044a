"""From network outputs to engine observations (NumPy only).

The frame analyser (detector + aligned crops + one batched ``FaceModel.analyze``)
ends with :func:`frame_observation`, which turns the faces of one frame into the
:class:`~facelivenet.auth.challenge.FrameObservation` the challenge engine consumes:
the identity distance of each face to the reference and its expression
probabilities by class name.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facelivenet.auth.challenge import FaceObservation, FrameObservation, pose_from_landmarks
from facelivenet.auth.gallery import identity_distances
from facelivenet.errors import InputError


def frame_observation(timestamp: float, boxes: np.ndarray | Sequence[Sequence[float]],
                      embeddings: np.ndarray, expressions: np.ndarray, classes: Sequence[str],
                      reference: np.ndarray, index: int | None = None,
                      landmarks: np.ndarray | Sequence | None = None) -> FrameObservation:
    """One frame's observation.

    Args:
        timestamp: the frame's time (seconds, the challenge's time base).
        boxes: (N, 4) face boxes (x1, y1, x2, y2) in frame pixels.
        embeddings: (N, D) unit embeddings of the faces (``Analysis.embeddings``).
        expressions: (N, C) probabilities (``Analysis.expressions``).
        classes: the C class names (``Analysis.expression_classes``).
        reference: (K, D) unit embeddings of the enrolled identity (or one ``--ref``
            image); each face's distance is to the nearest of them.
        index: the frame's number in its source.
        landmarks: (N, 5, 2) detector landmarks of the faces, for the head-move pose
            measures (None: no pose; head-move steps are then never shown).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    expressions = np.asarray(expressions, dtype=np.float32)
    n = boxes.shape[0]
    if embeddings.shape[0] != n or expressions.shape[0] != n:
        raise InputError(
            f"{n} boxes but {embeddings.shape[0]} embeddings and {expressions.shape[0]} expression rows"
        )
    if n and expressions.shape[1] != len(classes):
        raise InputError(f"{expressions.shape[1]} expression columns for {len(classes)} class names")
    distances = identity_distances(embeddings, reference) if n else np.zeros((0,), np.float32)
    if landmarks is not None and len(landmarks) != n:
        raise InputError(f"{n} boxes but {len(landmarks)} sets of landmarks")
    faces = [
        FaceObservation(
            box=tuple(float(v) for v in boxes[i]),
            identity_distance=float(distances[i]),
            expressions={str(c): float(p) for c, p in zip(classes, expressions[i])},
            pose=None if landmarks is None else pose_from_landmarks(landmarks[i]),
        )
        for i in range(n)
    ]
    return FrameObservation(float(timestamp), faces, index)
