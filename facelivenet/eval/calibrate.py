"""Choose a model's verification threshold on validation identities and record it in the model.

The threshold a model ships with decides every accept/reject of ``verify-video``,
``realtime`` and ``evaluate-auth``; it must come from validation data, never from the
test folds of a benchmark. :func:`calibration_images` lists a folder of aligned face
crops (one sub-folder per identity, optionally only the identities a training run held
out); :func:`calibrate_verification` embeds them, samples balanced same/different pairs and picks either the threshold of
best accuracy or, with ``far``, the largest threshold whose false-accept rate stays at
or under ``far``.
:func:`facelivenet.train.stages.with_config` writes the result into a copy of the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from facelivenet.data.datasets import scan_class_folders, split_by_group
from facelivenet.data.pairs import sample_pairs
from facelivenet.errors import InputError
from facelivenet.eval.metrics import best_threshold, kfold_accuracy, squared_l2_distances, threshold_at_far, val_far_at

MAX_PAIRS = 6000
READ_CHUNK = 256


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_verification`.

    Attributes:
        threshold: chosen squared-L2 threshold (accept iff distance <= threshold).
        rule: ``"best-accuracy"`` or ``"far<=F"``.
        accuracy: accuracy of ``threshold`` on all the sampled pairs.
        kfold_accuracy: 10-fold held-out accuracy on the same pairs (an unbiased view).
        val, far: true-accept and false-accept rates at ``threshold``.
        pairs: number of pairs (half same, half different).
        identities, images: what was embedded.
    """

    threshold: float
    rule: str
    accuracy: float
    kfold_accuracy: float
    val: float
    far: float
    pairs: int
    identities: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def calibration_images(data_dir: str | os.PathLike, *, val_fraction: float, seed: int):
    """Images and identity labels to calibrate on: all of ``data_dir``, or its held-out share.

    With ``val_fraction`` > 0 the identities are split exactly as ``train-verification
    --val-fraction F --seed S`` split them, and the validation share is returned.

    Returns:
        ``(paths, groups (N,) int, n_identities)``.
    """
    data = scan_class_folders(data_dir, min_images_per_class=2)
    if val_fraction > 0:
        _, data = split_by_group(data, val_fraction, seed)
    groups, names = data.group_labels()
    if len(names) < 2:
        raise InputError(f"{data_dir}: calibration needs at least 2 identities with 2+ images, found {len(names)}")
    return list(data.paths), np.asarray(groups), len(names)


def embed_files(model, paths, *, on_progress=None) -> np.ndarray:
    """(N, D) embeddings of face-crop image files, read with the one image reader.

    ``on_progress(n)`` is called with the number of images of each chunk embedded.
    """
    from facelivenet.images import read_image

    out = []
    for start in range(0, len(paths), READ_CHUNK):
        chunk = paths[start : start + READ_CHUNK]
        out.append(model.analyze([read_image(p) for p in chunk]).embeddings)
        if on_progress:
            on_progress(len(chunk))
    return np.concatenate(out)


def calibrate_verification(model, paths, groups, *, seed: int = 0, far: float | None = None,
                           max_pairs: int = MAX_PAIRS, on_progress=None, source: str = "calibration data") -> Calibration:
    """Pick the verification threshold of ``model`` on labelled face crops.

    Args:
        model: a :class:`facelivenet.api.FaceModel`.
        paths, groups: (N,) aligned face-crop files and their identity labels, e.g. from
            :func:`calibration_images`.
        seed: pair sampling.
        far: target false-accept rate; ``None`` picks the threshold of best accuracy.
        max_pairs: upper bound on the sampled pairs.
        on_progress: called with the number of images of each chunk embedded.
        source: names the data in errors.
    """
    groups = np.asarray(groups)
    emb = embed_files(model, list(paths), on_progress=on_progress)
    a, b, same = sample_pairs(groups, max_pairs, seed=seed)
    if len(a) < 20:
        raise InputError(f"{source}: only {len(a)} pairs could be formed; calibration needs at least 20")
    d = squared_l2_distances(emb[a], emb[b])
    if far is None:
        threshold, _ = best_threshold(d, same)
        rule = "best-accuracy"
    else:
        threshold = threshold_at_far(d, same, far)
        rule = f"far<={far:g}"
    val, far_at = val_far_at(d, same, threshold)
    accuracy = float(np.mean((d <= threshold) == same))
    return Calibration(
        threshold=float(threshold), rule=rule, accuracy=accuracy,
        kfold_accuracy=kfold_accuracy(d, same, n_folds=10).accuracy,
        val=float(val), far=float(far_at), pairs=len(a), identities=len(np.unique(groups)), images=len(emb),
    )


__all__ = ["Calibration", "calibrate_verification", "calibration_images", "embed_files"]
