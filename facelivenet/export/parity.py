"""Parity checks: does an exported artefact answer like our Keras model on real faces?

Pure numpy (no TensorFlow): the bounds per format, the comparison of two runners on the
same faces (:func:`check_parity` for the face network, :class:`StageParity` and
:func:`decision_agreement` for the detector's stages), and :func:`load_face_dir`, which
reads the real face crops both the checks and int8 calibration use.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facelivenet.errors import InputError
from facelivenet.export.formats import Runner
from facelivenet.faces import IMAGE_EXTENSIONS

#: Bounds an export must meet on real faces, per format: (min cosine similarity of
#: each face's embedding to ours, min share of faces whose expression argmax agrees).
#: Float formats differ from Keras only by operation order (measured: max |Δ| ~1e-6,
#: cosine 1 - 1e-12), so anything below 0.9999 is a conversion bug. int8 carries ~1/256
#: relative error per layer through ~40 layers; a cosine of 0.98 moves the squared L2
#: distance between two unit embeddings by at most 2(1 - 0.98) = 0.04, a few percent of a
#: verification threshold near 1, and we ask that 90% of expression argmaxes agree.
#: ``onnx-int8`` (the runtime's ``--precision int8``, :mod:`facelivenet.runtime.quantize`)
#: is held to the same int8 bounds.
PARITY_BOUNDS: dict[str, tuple[float, float]] = {
    "savedmodel": (0.9999, 1.0),
    "tflite": (0.9999, 1.0),
    "onnx": (0.9999, 1.0),
    "tflite-int8": (0.98, 0.9),
}
PARITY_BOUNDS["onnx-int8"] = PARITY_BOUNDS["tflite-int8"]
#: Detector parity bounds per format: (max |difference| of any output value, min share
#: of clear face/non-face decisions that agree, see :func:`decision_agreement`). Float
#: formats match to ~1e-6; int8 moves values by a few percent of their range.
DETECTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "savedmodel": (1e-4, 1.0),
    "tflite": (1e-4, 1.0),
    "onnx": (1e-4, 1.0),
    "tflite-int8": (float("inf"), 0.9),
}


@dataclass(frozen=True)
class Parity:
    """Agreement of an exported model with the Keras model on the same faces."""

    format: str
    faces: int
    max_abs_embedding_diff: float
    min_cosine: float
    mean_cosine: float
    argmax_agreement: float
    max_abs_probability_diff: float
    bound_cosine: float
    bound_agreement: float

    @property
    def ok(self) -> bool:
        return self.min_cosine >= self.bound_cosine and self.argmax_agreement >= self.bound_agreement

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class StageParity:
    """Agreement of one exported detector stage with ours on the same inputs."""

    stage: str
    format: str
    inputs: int
    max_abs_diff: dict[str, float]
    decision_agreement: float
    bound_abs_diff: float
    bound_agreement: float

    @property
    def ok(self) -> bool:
        return (max(self.max_abs_diff.values()) <= self.bound_abs_diff
                and self.decision_agreement >= self.bound_agreement)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_parity(fmt: str, ours: Runner, theirs: Runner, faces: np.ndarray) -> Parity:
    """Compare two runners on the same (N, S, S, 3) uint8 faces."""
    e0, p0 = ours(faces)
    e1, p1 = theirs(faces)
    e0, e1 = np.asarray(e0, np.float64), np.asarray(e1, np.float64)
    cos = np.sum(e0 * e1, axis=1) / (np.linalg.norm(e0, axis=1) * np.linalg.norm(e1, axis=1) + 1e-12)
    bound_cos, bound_agree = PARITY_BOUNDS[fmt]
    return Parity(
        format=fmt,
        faces=int(len(faces)),
        max_abs_embedding_diff=float(np.abs(e0 - e1).max()),
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        argmax_agreement=float(np.mean(np.argmax(p0, 1) == np.argmax(p1, 1))),
        max_abs_probability_diff=float(np.abs(np.asarray(p0) - np.asarray(p1)).max()),
        bound_cosine=bound_cos,
        bound_agreement=bound_agree,
    )


def decision_agreement(probs_ours: np.ndarray, probs_theirs: np.ndarray, margin: float = 0.1) -> float:
    """Share of face/non-face decisions that agree, over the inputs (or map cells) that
    our model decides clearly (face probability at least ``margin`` away from 0.5): a
    probability of 0.49 against 0.51 is noise, not disagreement. 1.0 when none qualify.

    Args:
        probs_ours, probs_theirs: (..., 2) softmax outputs (non-face, face).
    """
    p = probs_ours[..., 1].ravel()
    q = probs_theirs[..., 1].ravel()
    clear = np.abs(p - 0.5) >= margin
    if not clear.any():
        return 1.0
    return float(np.mean((p[clear] > 0.5) == (q[clear] > 0.5)))


def load_face_dir(folder: str | os.PathLike, size: int, limit: int | None = None) -> np.ndarray:
    """Read every image under ``folder`` (recursively) as (N, size, size, 3) uint8 crops.

    Unreadable files are skipped; a folder without any readable image is an error.
    """
    from facelivenet.errors import ImageReadError
    from facelivenet.images import read_image
    from facelivenet.preprocess import prepare_faces

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory of face crops")
    exts = set(IMAGE_EXTENSIONS)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts)
    faces = []
    for p in files:
        if limit is not None and len(faces) >= limit:
            break
        try:
            faces.append(read_image(p))
        except ImageReadError:
            continue
    if not faces:
        raise InputError(f"{root}: no readable face images")
    return prepare_faces(faces, size)
