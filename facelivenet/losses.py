"""Training losses of FaceLiveNet, written with ``keras.ops`` only.

Equations (``../shared/DESIGN.md`` §3, the papers in ``../shared/papers``):

- softmax cross-entropy (ICPR eq. 2), averaged over the batch;
- center loss and the center update of ICPR eq. 6-7:
  ``c_l <- c_l - gamma * mean_{i: y_i = l}(c_l - x_i)`` for the classes in the batch;
- class-wise triplet loss, ICPR form (eq. 3-5):
  ``Lc = max(k * D_intra + beta - theta * D_psi, 0)`` with
  ``D_intra = 1/2 sum_i ||x_i - c_{y_i}||^2`` and ``D_psi = 1/2 sum_i sum_l ||x_i - c_l||^2``
  (k = number of classes, i.e. of centers);
- class-wise triplet loss, FaceLiveNet+ form (eq. 3-4):
  ``Lc = sum_i sum_{l != y_i} max(d_{y_i,i} + beta0 - d_{l,i}, 0)``, Euclidean distances;
- L2 weight decay: the sum of a model's regularisation losses (``model.losses``);
- margin softmax heads (DESIGN.md §3b): CosFace ``s * (cos theta_y - m)`` and ArcFace
  ``s * cos(theta_y + m)`` on the target logit (``cos theta_y - m sin m`` where
  ``theta_y + m > pi``), ``s * cos theta_j`` elsewhere, with features and class
  weights L2-normalised;
- masked means for joint training: each loss averaged over the samples that carry
  its label (soft-label cross-entropy, a binary attribute on one class's probability,
  embedding distillation ``1 - cos(student, teacher)``).

Centers are never trained by gradient: every loss stops the gradient into them, and
:class:`CenterState` keeps them as a non-trainable layer weight that the training step
updates with :func:`center_update` (so they are checkpointed with the model).

Shapes: ``features`` (N, D) float, ``labels`` (N,) int class indices, ``centers``
(K, D), ``logits`` (N, K).
"""

from __future__ import annotations

import keras
from keras import ops

#: Floor under squared distances before a square root (finite gradient at 0).
_SQRT_EPS = 1e-12


def softmax_cross_entropy(labels, logits):
    """Mean softmax cross-entropy of integer ``labels`` (N,) against ``logits`` (N, K)."""
    logits = ops.cast(logits, "float32")
    per_sample = keras.losses.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), logits, from_logits=True
    )
    return ops.mean(per_sample)


def accuracy(labels, logits):
    """Share of rows whose arg-max equals the label (float32 scalar)."""
    predicted = ops.argmax(logits, axis=-1)
    return ops.mean(ops.cast(ops.equal(ops.cast(predicted, "int32"), ops.cast(labels, "int32")), "float32"))


def _squared_distances_to_centers(features, centers):
    """(N, K) squared Euclidean distances between each row of ``features`` and each center."""
    x = ops.cast(features, "float32")
    c = ops.stop_gradient(ops.cast(centers, "float32"))
    xx = ops.sum(ops.square(x), axis=1, keepdims=True)
    cc = ops.sum(ops.square(c), axis=1)[None, :]
    return ops.maximum(xx - 2.0 * ops.matmul(x, ops.transpose(c)) + cc, 0.0)


def _own_center(features, labels, centers):
    c = ops.stop_gradient(ops.cast(centers, "float32"))
    return ops.take(c, ops.cast(labels, "int32"), axis=0)


def center_loss(features, labels, centers):
    """Plain center loss ``1/N sum_i 1/2 ||x_i - c_{y_i}||^2`` (the reference demo's form)."""
    diff = ops.cast(features, "float32") - _own_center(features, labels, centers)
    return 0.5 * ops.mean(ops.sum(ops.square(diff), axis=1))


def triplet_terms_icpr(features, labels, centers):
    """The two sums of ICPR eq. 4-5 for one batch: ``(D_intra, D_psi)``, float32 scalars."""
    diff = ops.cast(features, "float32") - _own_center(features, labels, centers)
    d_intra = 0.5 * ops.sum(ops.square(diff))
    d_psi = 0.5 * ops.sum(_squared_distances_to_centers(features, centers))
    return d_intra, d_psi


def classwise_triplet_loss_icpr(features, labels, centers, beta: float = 10.0, theta: float = 0.5, active=None):
    """ICPR eq. 3: ``max(k * D_intra + beta - theta * D_psi, 0)`` with k = number of centers.

    Args:
        active: optional 0/1 scalar saying whether the hinge is open. ``None`` decides
            from this batch. A distributed step passes the decision taken on the
            global batch, so that the replicas' losses (each with ``beta`` divided by
            the replica count) add up to the single-device loss; see
            :mod:`facelivenet.train.stages`.
    """
    k = float(ops.shape(centers)[0])
    d_intra, d_psi = triplet_terms_icpr(features, labels, centers)
    inner = k * d_intra + beta - theta * d_psi
    if active is None:
        return ops.maximum(inner, 0.0)
    return ops.cast(active, "float32") * inner


def classwise_triplet_loss_plus(features, labels, centers, margin: float = 1.0):
    """FaceLiveNet+ eq. 3-4: ``sum_i sum_{l != y_i} max(d_{y_i,i} + margin - d_{l,i}, 0)``."""
    sq = _squared_distances_to_centers(features, centers)
    d = ops.sqrt(ops.maximum(sq, _SQRT_EPS))
    k = ops.shape(centers)[0]
    onehot = ops.one_hot(ops.cast(labels, "int32"), k, dtype="float32")
    d_own = ops.sum(d * onehot, axis=1, keepdims=True)
    hinge = ops.maximum(d_own + margin - d, 0.0) * (1.0 - onehot)
    return ops.sum(hinge)


def center_statistics(features, labels, num_classes: int, centers):
    """Per-class sums of ``c_{y_i} - x_i`` and per-class counts over one batch.

    Returns ``(sum_diff (K, D), counts (K,))``. Split out of :func:`center_update` so a
    distributed step can add them up across replicas before the update.
    """
    x = ops.stop_gradient(ops.cast(features, "float32"))
    onehot = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")  # (N, K)
    counts = ops.sum(onehot, axis=0)
    sum_x = ops.matmul(ops.transpose(onehot), x)  # (K, D)
    sum_diff = counts[:, None] * ops.cast(centers, "float32") - sum_x
    return sum_diff, counts


def center_update(centers, sum_diff, counts, rate: float):
    """ICPR eq. 6-7: ``c_l - rate * sum_diff_l / count_l`` for classes in the batch; others unchanged."""
    delta = sum_diff / ops.maximum(counts, 1.0)[:, None]
    return ops.cast(centers, "float32") - rate * delta


def cosine_logits(features, weights):
    """(N, K) cosines between L2-normalised ``features`` (N, D) and class ``weights`` (D, K)."""
    x = ops.cast(features, "float32")
    w = ops.cast(weights, "float32")
    x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=1, keepdims=True), _SQRT_EPS))
    w = w / ops.sqrt(ops.maximum(ops.sum(ops.square(w), axis=0, keepdims=True), _SQRT_EPS))
    return ops.clip(ops.matmul(x, w), -1.0, 1.0)


def cosface_logits(cosines, labels, scale: float = 30.0, margin: float = 0.35):
    """CosFace (large-margin cosine): ``s * (cos theta_j - m [j = y])``."""
    k = ops.shape(cosines)[1]
    onehot = ops.one_hot(ops.cast(labels, "int32"), k, dtype="float32")
    return scale * (ops.cast(cosines, "float32") - margin * onehot)


def arcface_logits(cosines, labels, scale: float = 30.0, margin: float = 0.5):
    """ArcFace (additive angular margin): the target logit is ``s * cos(theta_y + m)``.

    ``cos(theta + m) = cos theta cos m - sin theta sin m``; where ``theta_y + m > pi``
    (``cos theta_y < cos(pi - m)``) the target is ``cos theta_y - m sin m`` instead, which
    keeps the logit decreasing in theta (insightface's fallback).
    """
    import math

    c = ops.cast(cosines, "float32")
    k = ops.shape(c)[1]
    onehot = ops.one_hot(ops.cast(labels, "int32"), k, dtype="float32")
    sin = ops.sqrt(ops.maximum(1.0 - ops.square(c), 0.0))
    phi = c * math.cos(margin) - sin * math.sin(margin)
    phi = ops.where(c > math.cos(math.pi - margin), phi, c - margin * math.sin(margin))
    return scale * (c * (1.0 - onehot) + phi * onehot)


def masked_mean(values, mask, count=None):
    """``sum(mask * values) / max(count, 1)``; ``count`` defaults to ``sum(mask)`` (a
    distributed step passes the global count so that the replicas' shares add up)."""
    m = ops.cast(mask, "float32")
    total = ops.sum(ops.cast(values, "float32") * m)
    n = ops.sum(m) if count is None else count
    return total / ops.maximum(n, 1.0)


def soft_cross_entropy(targets, logits):
    """Per-sample ``-sum_j t_j log softmax(logits)_j`` (N,) against target distributions (N, K)."""
    logp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    return -ops.sum(ops.cast(targets, "float32") * logp, axis=-1)


def binary_probability_loss(probability, target):
    """Per-sample binary cross-entropy of a probability (N,) against 0/1 targets (N,)."""
    p = ops.clip(ops.cast(probability, "float32"), 1e-6, 1.0 - 1e-6)
    t = ops.cast(target, "float32")
    return -(t * ops.log(p) + (1.0 - t) * ops.log(1.0 - p))


def distillation_loss(student, teacher):
    """Per-sample ``1 - cos(student, teacher)`` (N,) between embeddings of equal size."""
    s = ops.cast(student, "float32")
    t = ops.cast(teacher, "float32")
    s = s / ops.sqrt(ops.maximum(ops.sum(ops.square(s), axis=1, keepdims=True), _SQRT_EPS))
    t = t / ops.sqrt(ops.maximum(ops.sum(ops.square(t), axis=1, keepdims=True), _SQRT_EPS))
    return 1.0 - ops.sum(s * t, axis=1)


def weight_decay(model) -> "keras.KerasTensor":
    """Sum of ``model.losses`` (the L2 kernel regularisers of its trainable weights); 0 if none."""
    losses = list(model.losses)
    if not losses:
        return ops.convert_to_tensor(0.0, "float32")
    return ops.sum(ops.stack([ops.cast(l, "float32") for l in losses]))


@keras.saving.register_keras_serializable(package="facelivenet")
class CenterState(keras.layers.Layer):
    """Holds the class centers (K, D) as a non-trainable weight, initialised to zero.

    The centers live in a layer so that they are saved and restored with the rest of a
    training checkpoint. ``update`` applies :func:`center_update`.
    """

    def __init__(self, num_classes: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.centers = self.add_weight(
            shape=(self.num_classes, self.dim), initializer="zeros", trainable=False,
            name="centers", dtype="float32",
        )

    def statistics(self, features, labels):
        """:func:`center_statistics` against the current centers."""
        return center_statistics(features, labels, self.num_classes, self.centers)

    def update(self, sum_diff, counts, rate: float) -> None:
        """Move the centers by :func:`center_update` in place."""
        self.centers.assign(center_update(self.centers, sum_diff, counts, rate))

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim}
