"""Image files → face crops → network outputs, in batches, for the evaluation protocols.

Two ways to get a face crop from a file:

- :class:`WholeImage`: the file already is a face crop (``--aligned``; CK+, FER2013,
  ``facelivenet align`` output); the model resizes it.
- :class:`DetectedFace`: the detector finds the faces, :func:`pick_main_face` keeps the
  largest, most central one, :func:`align_face` cuts it as the model expects
  (``config.alignment``, ``config.margin``). An image without a face falls back to a
  centre crop (see :func:`center_box`) and is counted in ``no_face``.

:func:`analyze_files` runs either over many files with one network forward per chunk,
optionally adding the horizontally flipped face's embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from facelivenet.faces import CENTER_BOX_FRACTION, FacePath, center_box  # noqa: F401 (re-exported)

#: Files read, detected and run through the network per chunk.
CHUNK = 64

Progress = Callable[[Iterable[Any], int], Iterable[Any]]


class WholeImage:
    """Each image is used whole as the face crop (it is resized by the model)."""

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        return list(images), [True] * len(images)


class DetectedFace:
    """Detect, pick the main face and align it; a centre crop where there is no face.

    Args:
        config: the model's :class:`~facelivenet.config.NetworkConfig` (image size,
            alignment mode, margin).
        detector: object with ``detect_batch(images) -> list[list[Detection]]``;
            default: :class:`facelivenet.detect.FaceDetector`.
    """

    def __init__(self, config: Any, detector: Any = None):
        self.config = config
        self.path = FacePath(config, detector)
        self.detector = self.path.detector

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        """Crops (image_size², uint8 RGB) and whether a face was found, per image
        (the one face path's ``main_or_center`` policy)."""
        faces = [f[0] for f in self.path.faces_batch(images, "main_or_center")]
        return [f.crop for f in faces], [f.detected for f in faces]


@dataclass(frozen=True)
class FileOutputs:
    """Network outputs for N image files.

    Attributes:
        embeddings: (N, D) float32 unit embeddings (with ``flip``: of the sum of the
            face's and its mirror image's embeddings).
        expressions: (N, C) float32 expression probabilities (of the unflipped face).
        no_face: paths where the detector found no face (a centre crop was used).
    """

    embeddings: np.ndarray
    expressions: np.ndarray
    no_face: tuple[str, ...]


def flip_fused(embeddings: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """(N, D) unit rows of ``embeddings + flipped`` (both (N, D))."""
    total = np.asarray(embeddings, np.float64) + np.asarray(flipped, np.float64)
    norms = np.linalg.norm(total, axis=1, keepdims=True)
    return (total / np.maximum(norms, 1e-12)).astype(np.float32)


def analyze_files(model: Any, paths: Sequence[str], *, crops: Callable | None = None, flip: bool = False,
                  progress: Progress | None = None, chunk: int = CHUNK) -> FileOutputs:
    """Read, crop and analyse ``paths`` chunk by chunk (one network call per chunk).

    Args:
        model: a :class:`facelivenet.api.FaceModel` (or anything with ``analyze``).
        crops: :class:`WholeImage` (default) or :class:`DetectedFace`.
        flip: also embed each crop mirrored left-right and fuse the two embeddings.
        progress: ``progress(chunks, n_chunks)`` wrapper (a progress bar).

    Raises:
        ImageReadError: a file cannot be read.
    """
    from facelivenet.images import read_image

    crops = crops or WholeImage()
    starts = list(range(0, len(paths), chunk))
    embs, probs, no_face = [], [], []
    for start in (progress(starts, len(starts)) if progress else starts):
        names = paths[start : start + chunk]
        faces, found = crops([read_image(p) for p in names])
        no_face.extend(p for p, ok in zip(names, found) if not ok)
        if flip:
            mirrored = [np.ascontiguousarray(np.asarray(f)[:, ::-1]) for f in faces]
            out = model.analyze(list(faces) + mirrored)
            n = len(faces)
            embs.append(flip_fused(out.embeddings[:n], out.embeddings[n:]))
            probs.append(out.expressions[:n])
        else:
            out = model.analyze(faces)
            embs.append(out.embeddings)
            probs.append(out.expressions)
    if not embs:
        d, c = int(model.config.embedding_size), len(model.config.expression_classes)
        return FileOutputs(np.zeros((0, d), np.float32), np.zeros((0, c), np.float32), ())
    return FileOutputs(np.concatenate(embs), np.concatenate(probs), tuple(no_face))
