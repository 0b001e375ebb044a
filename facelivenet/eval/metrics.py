"""Evaluation metrics as pure numpy functions.

- Distances between embeddings (squared L2, cosine).
- The LFW protocol: k-fold accuracy (for each fold, the distance threshold that is
  best on the other folds is applied to the held-out fold; pairs at or below the
  threshold are called "same"), ROC, AUC, EER, and k-fold VAL@FAR (the threshold for
  the target FAR is interpolated on the other folds, as in facenet's ``calculate_val``).
- Classification: confusion matrix, row normalisation, per-class precision / recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facelivenet.distances import cosine_distances, squared_l2_distances  # noqa: F401 (re-exported)


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


def kfold_accuracy(distances: np.ndarray, issame: np.ndarray, n_folds: int = 10,
                   folds: np.ndarray | None = None) -> KFoldAccuracy:
    """LFW-protocol accuracy: best threshold on K-1 folds, accuracy on the held-out fold.

    Folds are contiguous blocks in the given order (as in LFW's ``pairs.txt``, where the
    file is fold after fold); shuffle sampled pairs first.

    Args:
        distances: (P,) pair distances (smaller = more alike).
        issame: (P,) bool ground truth.
        n_folds: K, 2 <= K <= P.
        folds: (P,) fold number of each pair, instead of K contiguous blocks (e.g. the
            file's folds after pairs were dropped).
    """
    d = np.asarray(distances, np.float64)
    s = np.asarray(issame, bool)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distances and issame must be (P,) arrays of one length: {d.shape} vs {s.shape}")
    members = _fold_members(d.size, n_folds, folds)
    accs, thresholds = [], []
    for k, test in enumerate(members):
        train = np.concatenate([f for j, f in enumerate(members) if j != k])
        t, _ = best_threshold(d[train], s[train])
        thresholds.append(t)
        accs.append(accuracy_at(d[test], s[test], t))
    accs_arr = np.array(accs)
    return KFoldAccuracy(float(accs_arr.mean()), float(accs_arr.std()), accs_arr, np.array(thresholds))


# --- fold assignment ---------------------------------------------------------------------

def _fold_members(n: int, n_folds: int, folds: np.ndarray | None) -> list[np.ndarray]:
    """Indices of each fold: contiguous blocks, or the pairs labelled k by ``folds`` (P,)."""
    if folds is None:
        if not 2 <= n_folds <= n:
            raise ValueError(f"need 2 <= n_folds <= number of pairs; got n_folds={n_folds}, pairs={n}")
        return np.array_split(np.arange(n), n_folds)
    f = np.asarray(folds)
    if f.shape != (n,):
        raise ValueError(f"folds must be a (P,) array of fold numbers; got shape {f.shape} for {n} pairs")
    members = [np.flatnonzero(f == k) for k in np.unique(f)]
    if len(members) < 2:
        raise ValueError(f"need at least 2 non-empty folds; got {len(members)}")
    return members


def _check_pairs(distances: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, np.float64)
    s = np.asarray(issame, bool)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distances and issame must be (P,) arrays of one length: {d.shape} vs {s.shape}")
    if d.size == 0:
        raise ValueError("no pairs")
    if not np.all(np.isfinite(d)):
        raise ValueError("distances must be finite")
    return d, s


# --- ROC, AUC, EER -----------------------------------------------------------------------

@dataclass(frozen=True)
class RocCurve:
    """ROC of a distance: pairs at or below a threshold are called "same".

    Attributes:
        thresholds: (T,) increasing thresholds: ``-inf`` (accept nothing), then every
            distinct distance.
        tpr: (T,) true accept rate (same pairs accepted / same pairs) at each threshold.
        fpr: (T,) false accept rate (different pairs accepted / different pairs).
    """

    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray


def roc_curve(distances: np.ndarray, issame: np.ndarray) -> RocCurve:
    """ROC at every distinct distance (scikit-learn's ``roc_curve(issame, -distances,
    drop_intermediate=False)``, thresholds negated).

    Args:
        distances: (P,) pair distances (smaller = more alike).
        issame: (P,) bool; needs at least one same and one different pair.
    """
    d, s = _check_pairs(distances, issame)
    n_same, n_diff = int(s.sum()), int((~s).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError(f"ROC needs same and different pairs; got {n_same} same, {n_diff} different")
    order = np.argsort(d, kind="stable")
    d_sorted, s_sorted = d[order], s[order]
    last = np.flatnonzero(np.r_[d_sorted[1:] > d_sorted[:-1], True])   # last index of each distinct value
    tp = np.cumsum(s_sorted)[last]
    fp = np.cumsum(~s_sorted)[last]
    return RocCurve(
        thresholds=np.r_[-np.inf, d_sorted[last]],
        tpr=np.r_[0.0, tp / n_same],
        fpr=np.r_[0.0, fp / n_diff],
    )


def auc(roc: RocCurve) -> float:
    """Area under the ROC (trapezoids; ties count one half, as ``roc_auc_score``)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


@dataclass(frozen=True)
class EqualErrorRate:
    """Where the false accept rate equals the false reject rate (1 - TPR).

    Attributes:
        eer: that common rate, linearly interpolated between the ROC points around the crossing.
        threshold: the distance threshold there (interpolated the same way).
    """

    eer: float
    threshold: float


def equal_error_rate(roc: RocCurve) -> EqualErrorRate:
    """EER of a ROC: the crossing of FAR = FRR on the piecewise-linear ROC.

    Between consecutive points i-1, i where ``g = (1 - tpr) - fpr`` changes sign, the
    crossing sits at ``a = g[i-1] / (g[i-1] - g[i])`` of the way; EER and threshold are
    interpolated there (the threshold of the first point, ``-inf``, is replaced by the
    next one's).
    """
    g = (1.0 - roc.tpr) - roc.fpr          # > 0 at the start (nothing accepted), < 0 at the end
    i = int(np.argmax(g <= 0))
    if i == 0:                              # cannot happen with both kinds of pairs; be safe
        return EqualErrorRate(float(roc.fpr[0]), float(roc.thresholds[0]))
    a = g[i - 1] / (g[i - 1] - g[i])
    eer = roc.fpr[i - 1] + a * (roc.fpr[i] - roc.fpr[i - 1])
    t0 = roc.thresholds[i - 1] if np.isfinite(roc.thresholds[i - 1]) else roc.thresholds[i]
    threshold = t0 + a * (roc.thresholds[i] - t0)
    return EqualErrorRate(float(eer), float(threshold))


# --- VAL @ FAR -----------------------------------------------------------------------------

def threshold_at_far(distances: np.ndarray, issame: np.ndarray, far_target: float) -> float:
    """Distance threshold at which the false accept rate of these pairs is ``far_target``.

    With the N different-pair distances sorted (n_1 <= ... <= n_N), the FAR at threshold
    n_k is k/N. The threshold is interpolated linearly in the points (k/N, n_k),
    k = 0..N, with the anchor (0, 0): distances are non-negative. Between two points the
    FAR on these pairs stays at or below the target (barring tied distances).
    This is facenet's ``calculate_val`` interpolation, on the exact FAR steps instead
    of a grid of thresholds.

    Args:
        distances: (P,) non-negative pair distances.
        issame: (P,) bool; needs at least one different pair.
        far_target: in (0, 1].
    """
    d, s = _check_pairs(distances, issame)
    if not 0.0 < far_target <= 1.0:
        raise ValueError(f"far_target must be in (0, 1]. Received: {far_target}")
    if np.any(d < 0):
        raise ValueError("threshold_at_far needs non-negative distances")
    neg = np.sort(d[~s])
    if neg.size == 0:
        raise ValueError("FAR needs at least one different pair")
    far_points = np.arange(neg.size + 1) / neg.size
    return float(np.interp(far_target, far_points, np.r_[0.0, neg]))


def val_far_at(distances: np.ndarray, issame: np.ndarray, threshold: float) -> tuple[float, float]:
    """(VAL, FAR) at ``threshold``: shares of same / different pairs with distance <= threshold.

    A share over no pairs is NaN.
    """
    d, s = _check_pairs(distances, issame)
    accept = d <= threshold
    n_same, n_diff = int(s.sum()), int((~s).sum())
    val = float(np.sum(accept & s) / n_same) if n_same else float("nan")
    far = float(np.sum(accept & ~s) / n_diff) if n_diff else float("nan")
    return val, far


@dataclass(frozen=True)
class ValAtFar:
    """Result of :func:`kfold_val_at_far`.

    Attributes:
        val: mean held-out VAL (true accept rate) over the folds.
        val_std: its standard deviation over the folds.
        far: mean held-out FAR actually reached.
        far_target: the FAR the thresholds were chosen for (on the training folds).
        fold_vals, fold_fars: (K,) held-out VAL and FAR per fold.
        thresholds: (K,) threshold chosen on the other folds for each fold.
    """

    val: float
    val_std: float
    far: float
    far_target: float
    fold_vals: np.ndarray
    fold_fars: np.ndarray
    thresholds: np.ndarray


def kfold_val_at_far(distances: np.ndarray, issame: np.ndarray, far_target: float = 1e-3,
                     n_folds: int = 10, folds: np.ndarray | None = None) -> ValAtFar:
    """VAL@FAR the LFW way: per fold, :func:`threshold_at_far` on the other folds,
    VAL and FAR measured on the held-out fold.

    Args:
        distances: (P,) non-negative pair distances.
        issame: (P,) bool.
        far_target: target FAR on the training folds (1e-3 for LFW).
        n_folds: K contiguous folds, when ``folds`` is None.
        folds: (P,) fold number of each pair (overrides ``n_folds``).

    A fold without same (different) pairs has a NaN VAL (FAR); means skip NaNs.
    """
    d, s = _check_pairs(distances, issame)
    members = _fold_members(d.size, n_folds, folds)
    vals, fars, thresholds = [], [], []
    for k, test in enumerate(members):
        train = np.concatenate([m for j, m in enumerate(members) if j != k])
        t = threshold_at_far(d[train], s[train], far_target)
        val, far = val_far_at(d[test], s[test], t)
        vals.append(val)
        fars.append(far)
        thresholds.append(t)
    v, f = np.array(vals), np.array(fars)
    return ValAtFar(
        val=_nanmean(v), val_std=float(np.nanstd(v)) if np.any(np.isfinite(v)) else float("nan"),
        far=_nanmean(f), far_target=float(far_target), fold_vals=v, fold_fars=f,
        thresholds=np.array(thresholds),
    )


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.any(np.isfinite(x)) else float("nan")


# --- classification (expressions) ---------------------------------------------------------

def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class.

    Args:
        labels, predictions: (N,) class indices in [0, n_classes).
    """
    y = np.asarray(labels, np.int64)
    p = np.asarray(predictions, np.int64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels and predictions must be (N,) arrays of one length: {y.shape} vs {p.shape}")
    if y.size and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """(C, C) float64: each row divided by its sum (rows without samples stay 0)."""
    c = np.asarray(confusion, np.float64)
    sums = c.sum(axis=1, keepdims=True)
    return np.divide(c, sums, out=np.zeros_like(c), where=sums > 0)


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C,) precision and (C,) recall per class from a confusion matrix.

    Precision of a class never predicted, and recall of a class without samples, are NaN.
    """
    c = np.asarray(confusion, np.float64)
    tp = np.diag(c)
    predicted, actual = c.sum(axis=0), c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
    return precision, recall
