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


def _rounded(result: Any) -> dict[str, Any]:
    """A result dataclass as a dict, floats rounded to 6 places."""
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.__dict__.items()}


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
        return _rounded(self)


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


@dataclass(frozen=True)
class NeutralCalibration:
    """Result of :func:`calibrate_neutral`.

    Attributes:
        threshold: chosen p(neutral) threshold (a face shows Neutral iff Neutral is the
            most probable class and p(neutral) >= threshold).
        recall_target: the Neutral recall asked for.
        recall: share of the neutral faces shown as Neutral at ``threshold``.
        false_neutral: share of the other faces shown as Neutral at ``threshold``.
        reached: whether ``recall`` reaches ``recall_target`` (when Neutral is the most
            probable class of too few neutral faces, no threshold can).
        recall_at_expression_threshold, false_neutral_at_expression_threshold: the same
            at the model's ``expression_threshold``, for comparison.
        neutral_faces, other_faces: what was measured.
    """

    threshold: float
    recall_target: float
    recall: float
    false_neutral: float
    reached: bool
    recall_at_expression_threshold: float
    false_neutral_at_expression_threshold: float
    neutral_faces: int
    other_faces: int

    def to_dict(self) -> dict[str, Any]:
        return _rounded(self)


def _neutral_on_top(probs: np.ndarray, neutral_index: int) -> np.ndarray:
    """(N,) whether no class is more probable than Neutral (ties count, as in the engine)."""
    return probs[:, neutral_index] >= probs.max(axis=1)


def neutral_threshold_for_recall(probs: np.ndarray, is_neutral: np.ndarray, neutral_index: int,
                                 recall: float) -> tuple[float, bool]:
    """The largest p(neutral) threshold at which Neutral recall reaches ``recall``.

    A face shows Neutral when no class is more probable than Neutral and p(neutral) is at
    or above the threshold (the challenge engine's rule). Returns ``(threshold, reached)``;
    when too few neutral faces have Neutral as their most probable class, the threshold
    is the lowest p(neutral) among those that do, and ``reached`` is False.
    """
    probs = np.asarray(probs, np.float64)
    is_neutral = np.asarray(is_neutral, bool)
    if not 0.0 < recall <= 1.0:
        raise InputError(f"recall must be in (0, 1]. Received: {recall}")
    if not is_neutral.any():
        raise InputError("no neutral faces to calibrate on")
    p = probs[is_neutral]
    top = p[_neutral_on_top(p, neutral_index), neutral_index]
    if top.size == 0:
        raise InputError("Neutral is the most probable class of none of the neutral faces")
    needed = int(np.ceil(recall * len(p) - 1e-9))
    ranked = np.sort(top)[::-1]
    if needed <= len(ranked):
        return float(ranked[max(needed, 1) - 1]), True
    return float(ranked[-1]), False


def neutral_rates(probs: np.ndarray, is_neutral: np.ndarray, neutral_index: int,
                  threshold: float) -> tuple[float, float]:
    """(recall on the neutral faces, false-neutral rate on the others) at ``threshold``."""
    probs = np.asarray(probs, np.float64)
    is_neutral = np.asarray(is_neutral, bool)
    shown = _neutral_on_top(probs, neutral_index) & (probs[:, neutral_index] >= threshold)
    others = ~is_neutral
    return (float(shown[is_neutral].mean()) if is_neutral.any() else float("nan"),
            float(shown[others].mean()) if others.any() else float("nan"))


def calibrate_neutral(model, paths, labels, *, recall: float = 0.8, progress=None,
                      source: str = "calibration data") -> NeutralCalibration:
    """Pick the p(neutral) threshold of ``model`` at a Neutral recall on labelled face crops.

    The challenge starts from Neutral, and a head trained on vote distributions (FER+)
    spreads a calm face's probability over neutral, sad and angry as the annotators
    did, so a fixed 0.5 misses calm faces. The threshold is set, like the verification
    threshold, on held-out faces, never on test clips; Neutral must stay the most
    probable class, so a frame never shows Neutral and an expression at once.

    Args:
        model: a :class:`facelivenet.api.FaceModel`.
        paths, labels: (N,) face crops in the model's geometry and their class names
            (any name; those meaning Neutral are the positives).
        recall: the Neutral recall to reach.
        progress: ``progress(chunks, n_chunks)`` wrapper (a progress bar).
        source: names the data in errors.
    """
    from facelivenet.eval.crops import analyze_files
    from facelivenet.eval.expression import class_index

    classes = tuple(model.config.expression_classes)
    n = class_index("neutral", classes)
    if n is None:
        raise InputError(f"the model has no Neutral class ({', '.join(classes)})")
    is_neutral = np.array([class_index(str(x), classes) == n for x in labels], bool)
    if is_neutral.sum() < 20 or (~is_neutral).sum() < 20:
        raise InputError(f"{source}: calibration needs at least 20 neutral and 20 other faces, "
                         f"found {int(is_neutral.sum())} and {int((~is_neutral).sum())}")
    probs = analyze_files(model, list(paths), progress=progress).expressions
    try:
        threshold, reached = neutral_threshold_for_recall(probs, is_neutral, n, recall)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    threshold = float(np.floor(threshold * 1e4) / 1e4)  # recorded to 4 places, never above
    r, f = neutral_rates(probs, is_neutral, n, threshold)
    r0, f0 = neutral_rates(probs, is_neutral, n, float(model.config.expression_threshold))
    return NeutralCalibration(threshold=threshold, recall_target=float(recall), recall=r, false_neutral=f,
                              reached=bool(reached), recall_at_expression_threshold=r0,
                              false_neutral_at_expression_threshold=f0,
                              neutral_faces=int(is_neutral.sum()), other_faces=int((~is_neutral).sum()))


__all__ = ["Calibration", "NeutralCalibration", "calibrate_neutral", "calibrate_verification", "calibration_images",
           "embed_files", "neutral_rates", "neutral_threshold_for_recall"]
