"""Metrics against hand-worked examples and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.eval.metrics import (
    accuracy_at, auc, best_threshold, confusion_matrix, cosine_distances, equal_error_rate,
    kfold_accuracy, kfold_val_at_far, normalize_rows, precision_recall, roc_curve,
    squared_l2_distances, threshold_at_far, val_far_at,
)


def test_distances():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(squared_l2_distances(a, b), [2.0, 1.0])
    np.testing.assert_allclose(cosine_distances(a, b), [1.0, 0.0])
    with pytest.raises(ValueError, match="differ in shape"):
        squared_l2_distances(a, b[:1])


def test_best_threshold_separable():
    d = np.array([0.1, 0.4, 0.2, 0.9, 1.5])
    s = np.array([True, True, True, False, False])
    t, acc = best_threshold(d, s)
    assert acc == 1.0 and t == pytest.approx((0.4 + 0.9) / 2)
    assert accuracy_at(d, s, t) == 1.0


def test_best_threshold_with_overlap_and_ties():
    # sorted: 0.1 S, 0.3 D, 0.3 S, 0.5 D -> the cut may not split the tie at 0.3
    d = np.array([0.3, 0.1, 0.5, 0.3])
    s = np.array([False, True, False, True])
    t, acc = best_threshold(d, s)
    # candidates: <0.1: 2/4 ; 0.2: 3/4 ; 0.4: 3/4 ; all: 2/4 -> smallest best is 0.2
    assert t == pytest.approx(0.2) and acc == 0.75
    # everything different: reject all
    t, acc = best_threshold(np.array([0.5, 0.7]), np.array([False, False]))
    assert acc == 1.0 and t < 0.5


def test_kfold_accuracy_hand_example():
    # 4 folds of 2 pairs; same pairs near 0, different near 1, one mistake in fold 3.
    d = np.array([0.1, 1.0, 0.2, 0.9, 1.2, 0.3, 0.15, 0.95])
    s = np.array([True, False, True, False, True, False, True, False])
    r = kfold_accuracy(d, s, n_folds=4)
    # thresholds learned on the other folds all fall between 0.3 and 0.9 or so:
    # fold 2 ([1.2 S, 0.3 D]) is always wrong on both pairs
    np.testing.assert_allclose(r.fold_accuracies, [1.0, 1.0, 0.0, 1.0])
    assert r.accuracy == pytest.approx(0.75)
    assert r.std == pytest.approx(np.std([1, 1, 0, 1]))
    assert r.thresholds.shape == (4,)


def test_kfold_random_scores_near_chance_and_perfect_scores_perfect():
    rng = np.random.default_rng(0)
    s = rng.random(2000) < 0.5
    assert abs(kfold_accuracy(rng.random(2000), s).accuracy - 0.5) < 0.05
    assert kfold_accuracy(np.where(s, 0.2, 1.4) + rng.normal(0, 0.05, 2000), s).accuracy == 1.0


def test_kfold_argument_errors():
    with pytest.raises(ValueError, match="n_folds"):
        kfold_accuracy(np.zeros(3), np.zeros(3, bool), n_folds=10)
    with pytest.raises(ValueError, match="one length"):
        kfold_accuracy(np.zeros(3), np.zeros(4, bool))


def test_kfold_accuracy_with_explicit_folds():
    d = np.array([0.1, 1.0, 0.2, 0.9, 1.2, 0.3, 0.15, 0.95])
    s = np.array([True, False, True, False, True, False, True, False])
    contiguous = kfold_accuracy(d, s, n_folds=4)
    labelled = kfold_accuracy(d, s, folds=np.repeat([0, 1, 2, 3], 2))
    np.testing.assert_allclose(labelled.fold_accuracies, contiguous.fold_accuracies)
    # dropping a pair keeps the others in their own fold
    r = kfold_accuracy(np.delete(d, 0), np.delete(s, 0), folds=np.delete(np.repeat([0, 1, 2, 3], 2), 0))
    np.testing.assert_allclose(r.fold_accuracies, [1.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 non-empty folds"):
        kfold_accuracy(d, s, folds=np.zeros(8))


# --- ROC / AUC / EER ---------------------------------------------------------------------

HAND_D = np.array([0.1, 0.2, 0.2, 0.5])
HAND_S = np.array([True, False, True, False])


def test_roc_hand_example_with_a_tie():
    roc = roc_curve(HAND_D, HAND_S)
    np.testing.assert_allclose(roc.thresholds, [-np.inf, 0.1, 0.2, 0.5])
    np.testing.assert_allclose(roc.tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(roc.fpr, [0.0, 0.0, 0.5, 1.0])
    # P(same closer than different) with ties counting 1/2: (1 + 1 + 0.5 + 1) / 4
    assert auc(roc) == pytest.approx(0.875)
    eer = equal_error_rate(roc)
    # FRR - FAR: 1, 0.5, -0.5, -1 -> halfway between (0, 0.5) and (0.5, 0)
    assert eer.eer == pytest.approx(0.25) and eer.threshold == pytest.approx(0.15)


def test_roc_perfect_and_inverted():
    s = np.array([True, True, False, False])
    perfect = roc_curve(np.array([0.1, 0.2, 0.8, 0.9]), s)
    assert auc(perfect) == 1.0 and equal_error_rate(perfect).eer == 0.0
    assert 0.2 <= equal_error_rate(perfect).threshold <= 0.8
    inverted = roc_curve(np.array([0.8, 0.9, 0.1, 0.2]), s)
    assert auc(inverted) == 0.0 and equal_error_rate(inverted).eer == 1.0


def test_roc_errors():
    with pytest.raises(ValueError, match="same and different"):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(ValueError, match="finite"):
        roc_curve(np.array([0.1, np.nan]), np.array([True, False]))


@pytest.mark.parametrize("decimals", [None, 1])   # continuous scores, and heavy ties
def test_roc_auc_eer_match_scikit_learn(decimals):
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    s = rng.random(500) < 0.4
    d = np.where(s, rng.normal(0.8, 0.3, 500), rng.normal(1.4, 0.3, 500)).clip(0)
    if decimals is not None:
        d = np.round(d, decimals)
    roc = roc_curve(d, s)
    fpr, tpr, thr = skm.roc_curve(s, -d, drop_intermediate=False)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.thresholds[1:], -thr[1:])
    assert auc(roc) == pytest.approx(skm.roc_auc_score(s, -d), abs=1e-12)
    # facenet's EER: where the interpolated ROC meets TPR = 1 - FPR
    expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert equal_error_rate(roc).eer == pytest.approx(expected, abs=1e-9)


# --- VAL@FAR -------------------------------------------------------------------------------

def test_threshold_at_far_interpolates_the_far_steps():
    d = np.array([0.4, 0.05, 0.8, 1.2, 1.6, 0.3])
    s = np.array([False, True, False, False, False, True])
    # different pairs 0.4 0.8 1.2 1.6: FAR k/4 at n_k, anchor (0, 0)
    assert threshold_at_far(d, s, 0.1) == pytest.approx(0.16)
    assert threshold_at_far(d, s, 0.25) == pytest.approx(0.4)
    assert threshold_at_far(d, s, 0.375) == pytest.approx(0.6)
    assert threshold_at_far(d, s, 1.0) == pytest.approx(1.6)
    t = threshold_at_far(d, s, 0.375)
    assert val_far_at(d, s, t) == (1.0, 0.25)     # the FAR reached stays <= the target
    with pytest.raises(ValueError, match="far_target"):
        threshold_at_far(d, s, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        threshold_at_far(-d, s, 0.1)


def test_kfold_val_at_far_hand_example():
    # fold A: same 0.1 0.5, different 0.4 0.8; fold B: same 0.3 0.9, different 0.2 1.0
    d = np.array([0.1, 0.5, 0.4, 0.8, 0.3, 0.9, 0.2, 1.0])
    s = np.array([True, True, False, False, True, True, False, False])
    r = kfold_val_at_far(d, s, far_target=0.5, n_folds=2)
    # test A with B's different pairs (0.2, 1.0): t = 0.2 -> VAL 1/2, FAR 0
    # test B with A's different pairs (0.4, 0.8): t = 0.4 -> VAL 1/2 (0.3), FAR 1/2 (0.2)
    np.testing.assert_allclose(r.thresholds, [0.2, 0.4])
    np.testing.assert_allclose(r.fold_vals, [0.5, 0.5])
    np.testing.assert_allclose(r.fold_fars, [0.0, 0.5])
    assert (r.val, r.val_std, r.far, r.far_target) == (0.5, 0.0, 0.25, 0.5)


def test_kfold_val_at_far_separable_and_fold_without_same_pairs():
    rng = np.random.default_rng(0)
    s = np.tile([True, False], 1000)
    d = np.where(s, rng.uniform(0.0, 0.5, 2000), rng.uniform(1.0, 2.0, 2000))
    r = kfold_val_at_far(d, s, far_target=1e-3)
    assert r.val == 1.0 and r.far <= 2e-3 and r.fold_vals.shape == (10,)
    r = kfold_val_at_far(np.array([0.1, 0.9, 0.8, 0.7]), np.array([True, False, False, False]),
                         far_target=0.5, folds=np.array([0, 0, 1, 1]))
    assert np.isnan(r.fold_vals[1]) and r.val == 1.0


# --- classification ------------------------------------------------------------------------

def test_confusion_precision_recall_hand_example():
    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0, 1])
    c = confusion_matrix(y, p, 4)
    np.testing.assert_array_equal(c, [[1, 1, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(normalize_rows(c)[1], [1 / 3, 2 / 3, 0, 0])
    assert normalize_rows(c)[3].sum() == 0
    precision, recall = precision_recall(c)
    np.testing.assert_allclose(precision[:2], [0.5, 0.5])
    assert np.isnan(precision[2]) and np.isnan(precision[3])      # never predicted
    np.testing.assert_allclose(recall[:3], [0.5, 2 / 3, 0.0])
    assert np.isnan(recall[3])                                    # no samples
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(y, p, 2)


def test_confusion_precision_recall_match_scikit_learn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    c = confusion_matrix(y, p, 5)
    np.testing.assert_array_equal(c, skm.confusion_matrix(y, p, labels=range(5)))
    precision, recall = precision_recall(c)
    sk_p, sk_r, _, _ = skm.precision_recall_fscore_support(y, p, labels=range(5), zero_division=0)
    np.testing.assert_allclose(precision, sk_p)
    np.testing.assert_allclose(recall, sk_r)
    np.testing.assert_allclose(normalize_rows(c), skm.confusion_matrix(y, p, labels=range(5), normalize="true"))
