"""k-fold verification accuracy and distances, against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.eval.metrics import (
    accuracy_at, best_threshold, cosine_distances, kfold_accuracy, squared_l2_distances,
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
