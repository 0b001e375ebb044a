"""Verification metrics as pure numpy functions.

Distances between embeddings, and the LFW protocol's k-fold accuracy: for each fold,
the distance threshold that is best on the other folds is applied to the held-out fold
(pairs at or below the threshold are called "same").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def squared_l2_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise squared Euclidean distance.

    Args:
        a, b: (P, D) arrays (or (D,) for one pair).

    Returns:
        (P,) float64 distances (a scalar array for 1-D inputs).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding arrays differ in shape: {a.shape} vs {b.shape}")
    return np.sum(np.square(a - b), axis=-1)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - cos(a, b)`` in [0, 2]; (P, D) inputs → (P,)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"embedding arrays differ in shape: {a.shape} vs {b.shape}")
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def accuracy_at(distances: np.ndarray, issame: np.ndarray, threshold: float) -> float:
    """Share of pairs classified right when ``distance <= threshold`` means "same"."""
    d = np.asarray(distances, np.float64)
    s = np.asarray(issame, bool)
    if d.size == 0:
        raise ValueError("no pairs")
    return float(np.mean((d <= threshold) == s))


def best_threshold(distances: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Every distinct cut of the sorted distances is tried (midpoints between
    neighbouring distinct distances, plus one below the smallest), in O(P log P).
    Ties go to the smallest threshold.

    Returns:
        ``(threshold, accuracy)``.
    """
    d = np.asarray(distances, np.float64)
    s = np.asarray(issame, bool)
    if d.size == 0:
        raise ValueError("no pairs")
    order = np.argsort(d, kind="stable")
    d_sorted, s_sorted = d[order], s[order]
    # Cut after position i (i = -1 .. P-1): the first i+1 pairs are called "same".
    same_below = np.concatenate([[0], np.cumsum(s_sorted)])            # true accepts
    diff_below = np.concatenate([[0], np.cumsum(~s_sorted)])
    correct = same_below + (diff_below[-1] - diff_below)                  # + true rejects
    # Only cuts between distinct values are realisable by a threshold.
    valid = np.ones(d.size + 1, bool)
    valid[1:-1] = d_sorted[1:] > d_sorted[:-1]
    correct = np.where(valid, correct, -1)
    cut = int(np.argmax(correct))
    if cut == 0:
        threshold = d_sorted[0] - 1.0
    elif cut == d.size:
        threshold = d_sorted[-1]
    else:
        threshold = 0.5 * (d_sorted[cut - 1] + d_sorted[cut])
    return float(threshold), float(correct[cut] / d.size)


@dataclass(frozen=True)
class KFoldAccuracy:
    """Result of :func:`kfold_accuracy`.

    Attributes:
        accuracy: mean held-out accuracy over the folds.
        std: standard deviation of the fold accuracies.
        fold_accuracies: (K,) held-out accuracy of each fold.
        thresholds: (K,) threshold chosen on the other folds for each fold.
    """

    accuracy: float
    std: float
    fold_accuracies: np.ndarray
    thresholds: np.ndarray


def kfold_accuracy(distances: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> KFoldAccuracy:
    """LFW-protocol accuracy: best threshold on K-1 folds, accuracy on the held-out fold.

    Folds are contiguous blocks in the given order (as in LFW's ``pairs.txt``, where the
    file is fold after fold); shuffle sampled pairs first.

    Args:
        distances: (P,) pair distances (smaller = more alike).
        issame: (P,) bool ground truth.
        n_folds: K, 2 <= K <= P.
    """
    d = np.asarray(distances, np.float64)
    s = np.asarray(issame, bool)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distances and issame must be (P,) arrays of one length: {d.shape} vs {s.shape}")
    if not 2 <= n_folds <= d.size:
        raise ValueError(f"need 2 <= n_folds <= number of pairs; got n_folds={n_folds}, pairs={d.size}")
    folds = np.array_split(np.arange(d.size), n_folds)
    accs, thresholds = [], []
    for k, test in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != k])
        t, _ = best_threshold(d[train], s[train])
        thresholds.append(t)
        accs.append(accuracy_at(d[test], s[test], t))
    accs_arr = np.array(accs)
    return KFoldAccuracy(float(accs_arr.mean()), float(accs_arr.std()), accs_arr, np.array(thresholds))
