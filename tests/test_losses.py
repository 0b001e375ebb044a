"""Losses against values computed by hand (small arrays, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from facelivenet import losses

# Three samples in 2-D, two classes; centers chosen so every distance is easy to read.
X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
Y = np.array([0, 1, 0], np.int32)
C = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
# Squared distances to centers, row i / column l:
#   x0=(1,0): c0 -> 1, c1 -> 1+1 = 2
#   x1=(0,2): c0 -> 4, c1 -> 1
#   x2=(3,4): c0 -> 25, c1 -> 9+9 = 18
SQ = np.array([[1, 2], [4, 1], [25, 18]], np.float64)


def np_(t):
    return np.asarray(ops.convert_to_numpy(t), np.float64)


def test_softmax_cross_entropy_matches_hand_value():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    # row 0: -log(e^2 / (e^2 + 2)); row 1: -log(1/3)
    expected = (-np.log(np.e**2 / (np.e**2 + 2)) + np.log(3)) / 2
    assert np_(losses.softmax_cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-6)


def test_accuracy():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [5.0, 1.0]], np.float32)
    assert np_(losses.accuracy(np.array([0, 1, 1]), logits)) == pytest.approx(2 / 3)


def test_center_loss_is_half_mean_squared_distance_to_own_center():
    # own-center squared distances: 1, 1, 25
    assert np_(losses.center_loss(X, Y, C)) == pytest.approx(0.5 * (1 + 1 + 25) / 3)


def test_icpr_terms_and_loss():
    d_intra, d_psi = losses.triplet_terms_icpr(X, Y, C)
    assert np_(d_intra) == pytest.approx(0.5 * (1 + 1 + 25))          # 13.5
    assert np_(d_psi) == pytest.approx(0.5 * SQ.sum())                  # 25.5
    # k = 2 classes: 2 * 13.5 + beta - theta * 25.5
    assert np_(losses.classwise_triplet_loss_icpr(X, Y, C, beta=10, theta=0.5)) == pytest.approx(27 + 10 - 12.75)
    # The hinge closes: beta = -30 gives 27 - 30 - 12.75 < 0.
    assert np_(losses.classwise_triplet_loss_icpr(X, Y, C, beta=-30, theta=0.5)) == 0.0
    # An explicit decision overrides the batch's own: closed hinge gives 0, open gives the inner value.
    assert np_(losses.classwise_triplet_loss_icpr(X, Y, C, beta=-30, theta=0.5, active=1.0)) == pytest.approx(-15.75)


def test_plus_form_hinge_over_other_centers():
    d = np.sqrt(SQ)
    m = 1.5
    expected = 0.0
    for i, y in enumerate(Y):
        for l in range(2):
            if l != y:
                expected += max(d[i, y] + m - d[i, l], 0.0)
    # x0: 1 + 1.5 - sqrt2 ; x1: 1 + 1.5 - 2 ; x2: 5 + 1.5 - sqrt18
    assert expected == pytest.approx((2.5 - np.sqrt(2)) + 0.5 + (6.5 - np.sqrt(18)))
    assert np_(losses.classwise_triplet_loss_plus(X, Y, C, margin=m)) == pytest.approx(expected, rel=1e-6)
    # Large gaps close every hinge.
    assert np_(losses.classwise_triplet_loss_plus(X, Y, C, margin=-10.0)) == 0.0


def test_center_update_follows_eq_6_7():
    sum_diff, counts = losses.center_statistics(X, Y, 2, C)
    np.testing.assert_allclose(np_(counts), [2, 1])
    # class 0: (c0 - x0) + (c0 - x2) = (-1, 0) + (-3, -4) = (-4, -4); class 1: c1 - x1 = (0, -1)
    np.testing.assert_allclose(np_(sum_diff), [[-4, -4], [0, -1]])
    new = np_(losses.center_update(C, sum_diff, counts, rate=0.5))
    # c0 - 0.5 * mean = (0,0) - 0.5 * (-2, -2) = (1, 1); c1 - 0.5 * (0, -1) = (0, 1.5)
    np.testing.assert_allclose(new, [[1, 1], [0, 1.5]])


def test_center_update_leaves_absent_classes_alone():
    centers = np.array([[0.0, 0.0], [0.0, 1.0], [7.0, 7.0]], np.float32)
    sum_diff, counts = losses.center_statistics(X, Y, 3, centers)
    new = np_(losses.center_update(centers, sum_diff, counts, rate=1.0))
    np.testing.assert_allclose(new[2], [7, 7])
    # rate 1 moves a present center onto its batch mean: class 0 -> mean of x0, x2 = (2, 2)
    np.testing.assert_allclose(new[0], [2, 2])


def test_center_state_layer_updates_in_place():
    state = losses.CenterState(2, 2)
    np.testing.assert_allclose(np_(state.centers), 0)
    state.centers.assign(C)
    state.update(*state.statistics(X, Y), rate=0.5)
    np.testing.assert_allclose(np_(state.centers), [[1, 1], [0, 1.5]])
    assert state.trainable_weights == []


def test_losses_give_no_gradient_to_centers():
    import tensorflow as tf

    c = tf.Variable(C)
    x = tf.Variable(X)
    with tf.GradientTape() as tape:
        total = (losses.center_loss(x, Y, c) + losses.classwise_triplet_loss_icpr(x, Y, c)
                 + losses.classwise_triplet_loss_plus(x, Y, c))
    gx, gc = tape.gradient(total, [x, c])
    assert gc is None or np.all(np.asarray(gc) == 0)
    assert np.all(np.isfinite(np.asarray(gx)))


def test_plus_form_gradient_is_finite_at_a_center():
    import tensorflow as tf

    x = tf.Variable(C.copy())  # each sample exactly on its center: distance 0
    with tf.GradientTape() as tape:
        loss = losses.classwise_triplet_loss_plus(x, np.array([0, 1]), C, margin=2.0)
    assert np.all(np.isfinite(np.asarray(tape.gradient(loss, x))))


def test_weight_decay_sums_the_kernel_regularisers(tiny_model):
    net = tiny_model.network
    expected = 0.0
    wd = net.network_config.weight_decay
    for v in net.trainable_weights:
        if getattr(v, "regularizer", None) is not None:
            expected += wd * float(np.sum(np.square(np_(v))))
    assert expected > 0
    assert np_(losses.weight_decay(net)) == pytest.approx(expected, rel=1e-4)


def test_weight_decay_of_a_model_without_regularisers_is_zero():
    import keras

    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert np_(losses.weight_decay(m)) == 0.0


# --- margin heads and the joint-training terms (DESIGN.md §3b) ------------------------------

# Unit features at 0 and 90 degrees; class weights at 0, 60 and 180 degrees (any length).
FEAT = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
W = np.array([[1.0, 0.5, -3.0], [0.0, np.sqrt(3) / 2, 0.0]], np.float32)
# cos(theta): row 0: 1, 0.5, -1; row 1: 0, sqrt(3)/2, 0
COS = np.array([[1.0, 0.5, -1.0], [0.0, np.sqrt(3) / 2, 0.0]])


def test_cosine_logits_normalise_features_and_weights():
    np.testing.assert_allclose(np_(losses.cosine_logits(FEAT, W)), COS, atol=1e-6)


def test_cosface_subtracts_the_margin_from_the_target_cosine_only():
    got = np_(losses.cosface_logits(COS.astype(np.float32), np.array([0, 1]), scale=10.0, margin=0.35))
    expected = 10.0 * np.array([[1.0 - 0.35, 0.5, -1.0], [0.0, np.sqrt(3) / 2 - 0.35, 0.0]])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_arcface_adds_the_angle_to_the_target():
    # row 0, target class 1: theta = 60 deg -> cos(60 + 0.5 rad); row 1, target 1: theta = 30 deg.
    got = np_(losses.arcface_logits(COS.astype(np.float32), np.array([1, 1]), scale=2.0, margin=0.5))
    expected = 2.0 * np.array([[1.0, np.cos(np.pi / 3 + 0.5), -1.0], [0.0, np.cos(np.pi / 6 + 0.5), 0.0]])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_arcface_falls_back_to_a_cosine_margin_past_pi():
    # target class 2 of row 0: theta = 180 deg, theta + m > pi -> cos(theta) - m sin(m)
    got = np_(losses.arcface_logits(COS.astype(np.float32), np.array([2, 0]), scale=1.0, margin=0.5))
    assert got[0, 2] == pytest.approx(-1.0 - 0.5 * np.sin(0.5), abs=1e-5)
    assert got[1, 0] == pytest.approx(np.cos(np.pi / 2 + 0.5), abs=1e-5)
    assert got[0, 0] == pytest.approx(1.0) and got[0, 1] == pytest.approx(0.5)


def test_masked_mean_counts_only_labelled_samples():
    values = np.array([1.0, 5.0, 3.0, 100.0], np.float32)
    mask = np.array([1, 0, 1, 0], np.float32)
    assert np_(losses.masked_mean(values, mask)) == pytest.approx(2.0)
    assert np_(losses.masked_mean(values, mask, count=4.0)) == pytest.approx(1.0)
    assert np_(losses.masked_mean(values, np.zeros(4, np.float32))) == pytest.approx(0.0)


def test_soft_cross_entropy_against_a_vote_distribution():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], np.float32)
    targets = np.array([[0.7, 0.3], [0.5, 0.5]], np.float32)
    # row 0: -(0.7 log .5 + 0.3 log .5) = log 2; row 1: p = (.75, .25)
    expected = [np.log(2.0), -(0.5 * np.log(0.75) + 0.5 * np.log(0.25))]
    np.testing.assert_allclose(np_(losses.soft_cross_entropy(targets, logits)), expected, rtol=1e-5)


def test_binary_probability_loss():
    got = np_(losses.binary_probability_loss(np.array([0.8, 0.8], np.float32), np.array([1.0, 0.0], np.float32)))
    np.testing.assert_allclose(got, [-np.log(0.8), -np.log(0.2)], rtol=1e-5)


def test_distillation_loss_is_one_minus_cosine():
    s = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]], np.float32)
    t = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, -1.0]], np.float32)
    np.testing.assert_allclose(np_(losses.distillation_loss(s, t)), [0.0, 1 - np.sqrt(0.5), 2.0], atol=1e-6)
