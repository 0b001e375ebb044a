"""The objectives of the three training stages, on ``keras.ops`` (backend-neutral).

A stage owns the parts that exist only for training (the identity-logits head, the
class centers, the multi-task unit's objective) around a :class:`FaceLiveNet`, and
computes one batch's losses. The backend-specific step (:mod:`facelivenet.train.steps`)
takes the gradients, applies them, and calls :meth:`Stage.update_centers`.

Distributed steps. Every replica sees ``local`` of the ``global`` batch. The losses a
stage returns are scaled so that summing them over the replicas gives the loss of the
whole batch on one device: batch means are multiplied by ``local / global``, batch
sums stay as they are, weight decay is divided by the replica count. Where a loss is
not a sum over samples (the ICPR hinge over batch sums, the multi-task weights), the
batch-level quantity is taken on the whole batch through ``reduce`` (a cross-replica
sum; the identity on one device) with its gradient stopped. The logs follow the same
rule, so their cross-replica sum is the single-device value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import ops

from facelivenet import losses
from facelivenet.models.network import FaceLiveNet, copy_matching_weights
from facelivenet.train.options import MARGIN_LOSSES, VerificationLossConfig

Reduce = Callable[[object], object]

#: Added to each task loss in the multi-task unit's objective (the DMTL code's 0.01).
UNIT_EPSILON = 0.01


def _identity(x):
    return x


@dataclass
class StepOutput:
    """One replica's share of a training step.

    Attributes:
        loss: what the network's optimizer minimises (scaled, see the module doc).
        logs: named scalars (scaled likewise) for the progress bar and the logs.
        center_stats: ``(sum_diff, counts)`` for :meth:`Stage.update_centers`, or None.
        unit_loss: the dynamic-weight unit's own objective (multi-task only).
    """

    loss: object
    logs: dict
    center_stats: tuple | None = None
    unit_loss: object | None = None


def transfer_weights(src: keras.Model, dst: keras.Model) -> int:
    """Copy weights from ``src`` to ``dst`` layer by layer, matching names and shapes.

    Returns the number of layers copied. Used to carry a model's weights into a new
    model whose expression head has a different class list.
    """
    by_name = {layer.name: layer for layer in src.layers}
    return copy_matching_weights((by_name[l.name], l) for l in dst.layers if l.name in by_name)


def with_config(network: FaceLiveNet, **changes) -> FaceLiveNet:
    """A new network whose :class:`NetworkConfig` has ``changes`` applied, with ``network``'s weights.

    Layers whose shapes the changes alter (e.g. the logits for other expression
    classes) keep their fresh initialisation.
    """
    new = FaceLiveNet(network.network_config.replace(**changes))
    transfer_weights(network, new)
    return new


class _VerificationTerm:
    """Softmax over identities + alpha * Lc on the prelogits (L1 of DESIGN.md §3), or a
    margin head (ArcFace / CosFace, DESIGN.md §3b) in place of the softmax."""

    def __init__(self, num_ids: int, dim: int, loss_cfg: VerificationLossConfig, weight_decay: float):
        self.cfg = loss_cfg
        margin_head = loss_cfg.kind in MARGIN_LOSSES
        self.head = keras.layers.Dense(
            num_ids, name="identity_logits", use_bias=not margin_head,
            kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay > 0 and not margin_head else None,
        )
        self.head.build((None, dim))
        self.centers = losses.CenterState(num_ids, dim, name="identity_centers") if loss_cfg.uses_centers else None

    def variables(self) -> list:
        return list(self.head.variables) + (list(self.centers.variables) if self.centers else [])

    def logits(self, prelogits, labels):
        """Identity logits: the softmax head's, or the margin head's (margin on the label's logit)."""
        x = ops.cast(prelogits, "float32")
        cfg = self.cfg
        if cfg.kind == "arcface":
            return losses.arcface_logits(losses.cosine_logits(x, self.head.kernel), labels, cfg.scale, cfg.head_margin)
        if cfg.kind == "cosface":
            return losses.cosface_logits(losses.cosine_logits(x, self.head.kernel), labels, cfg.scale, cfg.head_margin)
        return ops.cast(self.head(x), "float32")

    def __call__(self, prelogits, labels, scale, reduce: Reduce) -> dict:
        x = ops.cast(prelogits, "float32")
        logits = self.logits(x, labels)
        ce = losses.softmax_cross_entropy(labels, logits) * scale
        correct = losses.accuracy(labels, logits) * scale
        cfg = self.cfg
        if not cfg.uses_centers:
            lc = ops.convert_to_tensor(0.0, "float32")
        elif cfg.kind == "center":
            lc = losses.center_loss(x, labels, self.centers.centers) * scale
        elif cfg.kind == "triplet-plus":
            lc = losses.classwise_triplet_loss_plus(x, labels, self.centers.centers, margin=cfg.margin)
        else:  # triplet-icpr: the hinge is open or closed for the whole batch
            k = float(self.centers.num_classes)
            d_intra, d_psi = losses.triplet_terms_icpr(x, labels, self.centers.centers)
            inner_global = reduce(ops.stop_gradient(k * d_intra + cfg.beta * scale - cfg.theta * d_psi))
            active = ops.cast(ops.greater(inner_global, 0.0), "float32")
            lc = losses.classwise_triplet_loss_icpr(
                x, labels, self.centers.centers, beta=cfg.beta * scale, theta=cfg.theta, active=active
            )
        out = {"ce_id": ce, "lc": lc, "l1": ce + cfg.alpha * lc, "acc_id": correct}
        if self.centers is not None:
            out["center_stats"] = self.centers.statistics(x, labels)
        return out

    def regularization(self):
        return losses.weight_decay(self.head)


class Stage:
    """Base: a network, the sub-model a stage trains, and its training-only parts.

    Attributes:
        name: the stage's name (``verification``, ``expression``, ``multitask``).
        metric: the validation metric that picks the best model (higher is better).
        net: the :class:`FaceLiveNet` being trained (what is saved).
        body: sub-model of ``net`` computing only the outputs this stage needs.
    """

    name = "stage"
    metric = "val_accuracy"
    center_rate = 0.5

    def __init__(self, net: FaceLiveNet):
        self.net = net
        self.body: keras.Model | None = None
        self.centers: losses.CenterState | None = None

    # --- variables ------------------------------------------------------------------
    def trainable_variables(self) -> list:
        """Variables the network optimizer updates."""
        raise NotImplementedError

    def unit_variables(self) -> list:
        """Variables of the dynamic-weight unit (multi-task only)."""
        return []

    def state_variables(self) -> list:
        """Everything a checkpoint must hold besides the optimizers (net, heads, centers, RNG)."""
        return list(self.net.variables)

    # --- one batch ------------------------------------------------------------------
    def step(self, images, labels, *, scale, replicas: int, reduce: Reduce = _identity) -> StepOutput:
        raise NotImplementedError

    def update_centers(self, sum_diff, counts) -> None:
        """Apply ICPR eq. 6-7 with the batch statistics (summed over replicas)."""
        if self.centers is not None:
            self.centers.update(sum_diff, counts, self.center_rate)

    def _weight_decay(self, replicas: int, *extra) -> object:
        total = losses.weight_decay(self.body)
        for term in extra:
            total = total + term
        return total / float(replicas)


class VerificationStage(Stage):
    """Stage 1: stem + branch 1 with softmax over identities + alpha * Lc."""

    name = "verification"
    metric = "val_pair_accuracy"

    def __init__(self, net: FaceLiveNet, num_ids: int, loss_cfg: VerificationLossConfig):
        super().__init__(net)
        self.body = keras.Model(net.input, net.get_layer("verif_bottleneck_bn").output, name="stage1_body")
        cfg = net.network_config
        self.term = _VerificationTerm(num_ids, cfg.embedding_size, loss_cfg, cfg.weight_decay)
        self.centers = self.term.centers
        self.center_rate = loss_cfg.center_rate

    def trainable_variables(self) -> list:
        return list(self.body.trainable_variables) + list(self.term.head.trainable_variables)

    def state_variables(self) -> list:
        return super().state_variables() + self.term.variables()

    def step(self, images, labels, *, scale, replicas, reduce=_identity) -> StepOutput:
        prelogits = self.body(images, training=True)
        t = self.term(prelogits, labels, scale, reduce)
        wd = self._weight_decay(replicas, self.term.regularization())
        loss = t["l1"] + wd
        logs = {"loss": loss, "ce_id": t["ce_id"], "lc": t["lc"], "weight_decay": wd, "acc_id": t["acc_id"]}
        return StepOutput(loss, logs, t.get("center_stats"))


class ExpressionStage(Stage):
    """Stage 2: branch 2 with softmax over expressions (+ optional center loss on its features).

    Unless ``train_all``, the stem, branch 1 and the dynamic-weight unit are frozen
    (their batch norms then run in inference mode).
    """

    name = "expression"
    metric = "val_accuracy"

    def __init__(self, net: FaceLiveNet, *, train_all: bool, center_factor: float, center_rate: float):
        super().__init__(net)
        if not train_all:
            frozen = {l.name for l in net.verification_layers()}
            for layer in net.layers:
                if layer.name in frozen or layer.name.startswith("dyn_"):
                    layer.trainable = False
        self.body = keras.Model(
            net.input,
            [net.get_layer("expression_logits").output, net.get_layer("expression_features").output],
            name="stage2_body",
        )
        self.center_factor = float(center_factor)
        self.center_rate = float(center_rate)
        if self.center_factor > 0:
            n_classes = len(net.network_config.expression_classes)
            self.centers = losses.CenterState(n_classes, net.network_config.expression_hidden, name="expression_centers")

    def trainable_variables(self) -> list:
        return list(self.body.trainable_variables)

    def state_variables(self) -> list:
        return super().state_variables() + (list(self.centers.variables) if self.centers else [])

    def step(self, images, labels, *, scale, replicas, reduce=_identity) -> StepOutput:
        logits, features = self.body(images, training=True)
        logits = ops.cast(logits, "float32")
        features = ops.cast(features, "float32")
        ce = losses.softmax_cross_entropy(labels, logits) * scale
        logs = {"ce_expr": ce, "acc_expr": losses.accuracy(labels, logits) * scale}
        loss = ce
        stats = None
        if self.centers is not None:
            lc = losses.center_loss(features, labels, self.centers.centers) * scale
            loss = loss + self.center_factor * lc
            logs["center_loss"] = lc
            stats = self.centers.statistics(features, labels)
        wd = self._weight_decay(replicas)
        loss = loss + wd
        logs["weight_decay"] = wd
        logs = {"loss": loss, **logs}
        return StepOutput(loss, logs, stats)


class MultitaskStage(Stage):
    """FaceLiveNet+: L3 = (1 + w1) L1 + w2 L2, the weights from the dynamic-weight unit.

    Rule used for the unit (the DMTL code's, DESIGN.md §3): (w1, w2) is the batch mean
    of the unit's softmax. The network minimises L3 (+ weight decay) with (w1, w2)
    held constant; the unit alone minimises its own objective
    ``w1 / (L1 + 0.01) + w2 / (L2 + 0.01)`` with L1, L2 held constant, which moves
    weight toward the task whose loss is larger.
    """

    name = "multitask"
    metric = "val_score"

    def __init__(self, net: FaceLiveNet, num_ids: int, loss_cfg: VerificationLossConfig):
        super().__init__(net)
        self.body = keras.Model(
            net.input,
            [
                net.get_layer("verif_bottleneck_bn").output,
                net.get_layer("expression_logits").output,
                net.get_layer("task_weights").output,
            ],
            name="multitask_body",
        )
        cfg = net.network_config
        self.term = _VerificationTerm(num_ids, cfg.embedding_size, loss_cfg, cfg.weight_decay)
        self.centers = self.term.centers
        self.center_rate = loss_cfg.center_rate
        self._unit_ids = {id(v) for v in net.get_layer("dyn_dense").trainable_variables}

    def trainable_variables(self) -> list:
        body = [v for v in self.body.trainable_variables if id(v) not in self._unit_ids]
        return body + list(self.term.head.trainable_variables)

    def unit_variables(self) -> list:
        return list(self.net.get_layer("dyn_dense").trainable_variables)

    def state_variables(self) -> list:
        return super().state_variables() + self.term.variables()

    def step(self, images, labels, *, scale, replicas, reduce=_identity) -> StepOutput:
        id_labels, expr_labels = labels[:, 0], labels[:, 1]
        prelogits, expr_logits, task_weights = self.body(images, training=True)
        t = self.term(prelogits, id_labels, scale, reduce)
        expr_logits = ops.cast(expr_logits, "float32")
        l2 = losses.softmax_cross_entropy(expr_labels, expr_logits) * scale
        w_local = ops.mean(ops.cast(task_weights, "float32"), axis=0) * scale      # sums to the batch mean
        w = reduce(ops.stop_gradient(w_local))
        l1 = t["l1"]
        wd = self._weight_decay(replicas, self.term.regularization())
        loss = (1.0 + w[0]) * l1 + w[1] * l2 + wd
        l1_all = reduce(ops.stop_gradient(l1))
        l2_all = reduce(ops.stop_gradient(l2))
        unit = w_local[0] / (l1_all + UNIT_EPSILON) + w_local[1] / (l2_all + UNIT_EPSILON)
        r = float(replicas)
        logs = {
            "loss": loss, "l1": l1, "l2": l2,
            # w1, w2 are the same on every replica: share them so the sum is the value.
            "w1": w[0] / r, "w2": w[1] / r,
            "ce_id": t["ce_id"], "lc": t["lc"], "acc_id": t["acc_id"],
            "acc_expr": losses.accuracy(expr_labels, expr_logits) * scale,
            "unit_objective": unit, "weight_decay": wd,
        }
        return StepOutput(loss, logs, t.get("center_stats"), unit_loss=unit)


@dataclass(frozen=True)
class JointLayout:
    """Columns of a joint batch's float label matrix (see :mod:`facelivenet.train.joint`).

    ``[identity | expression (C) | expression mask | smiling | smiling mask |
    teacher (T) | teacher mask]``; identity is -1 where unknown.
    """

    classes: int
    teacher_dim: int

    @property
    def width(self) -> int:
        return 1 + self.classes + 2 + 2 + self.teacher_dim + 1

    def split(self, labels):
        c, t = self.classes, self.teacher_dim
        ident = labels[:, 0]
        expr = labels[:, 1 : 1 + c]
        expr_mask = labels[:, 1 + c]
        smile = labels[:, 2 + c]
        smile_mask = labels[:, 3 + c]
        teacher = labels[:, 4 + c : 4 + c + t]
        teacher_mask = labels[:, 4 + c + t]
        return ident, expr, expr_mask, smile, smile_mask, teacher, teacher_mask


@dataclass(frozen=True)
class JointWeights:
    """Weights of the joint objective's terms (DESIGN.md §3b)."""

    identity: float = 1.0
    distill: float = 10.0
    expression: float = 1.0
    smiling: float = 0.5


class JointStage(Stage):
    """Joint training of the whole network on mixed batches, each loss masked to its labels.

    ``L = w_id L_id + w_kd L_kd + w_expr L_expr + w_smile L_smile + weight decay`` where

    * ``L_id``: the identity head (softmax or an ArcFace / CosFace margin head) on the
      samples with an identity label;
    * ``L_kd``: ``1 - cos(embedding, teacher)`` on every sample with a teacher embedding
      (the teacher's cached descriptor, centred and normalised);
    * ``L_expr``: cross-entropy against the target distribution (FER+ votes, one-hot
      labels) on the samples with an expression;
    * ``L_smile``: binary cross-entropy of p(happy) against CelebA's ``Smiling``.

    Each is the mean over the samples that carry its label, counted on the whole global
    batch (``reduce``), so a distributed step adds up to the single-device loss.
    """

    name = "joint"
    metric = "val_score"

    def __init__(self, net: FaceLiveNet, num_ids: int, loss_cfg: VerificationLossConfig, layout: JointLayout,
                 weights: JointWeights, happy_index: int | None):
        super().__init__(net)
        if loss_cfg.uses_centers:
            raise ValueError("joint training takes --loss none, arcface or cosface (no class centers)")
        cfg = net.network_config
        if layout.teacher_dim != cfg.embedding_size:
            raise ValueError(f"the teacher's embeddings are {layout.teacher_dim}-d; the network's {cfg.embedding_size}-d")
        self.body = keras.Model(
            net.input,
            [net.get_layer("verif_bottleneck_bn").output, net.get_layer("embedding").output,
             net.get_layer("expression_logits").output],
            name="joint_body",
        )
        self.term = _VerificationTerm(max(num_ids, 1), cfg.embedding_size, loss_cfg, cfg.weight_decay)
        self.layout = layout
        self.weights = weights
        self.happy_index = happy_index
        self._unit_ids = {id(v) for v in net.get_layer("dyn_dense").trainable_variables}

    def trainable_variables(self) -> list:
        body = [v for v in self.body.trainable_variables if id(v) not in self._unit_ids]
        return body + list(self.term.head.trainable_variables)

    def state_variables(self) -> list:
        return super().state_variables() + self.term.variables()

    def step(self, images, labels, *, scale, replicas, reduce=_identity) -> StepOutput:
        ident, expr, expr_mask, smile, smile_mask, teacher, teacher_mask = self.layout.split(
            ops.cast(labels, "float32"))
        prelogits, embedding, expr_logits = self.body(images, training=True)
        expr_logits = ops.cast(expr_logits, "float32")
        id_mask = ops.cast(ops.greater_equal(ident, 0.0), "float32")
        id_labels = ops.cast(ops.maximum(ident, 0.0), "int32")

        def count(mask):
            return reduce(ops.stop_gradient(ops.sum(mask)))

        id_logits = self.term.logits(prelogits, id_labels)
        per_id = keras.losses.sparse_categorical_crossentropy(id_labels, id_logits, from_logits=True)
        l_id = losses.masked_mean(per_id, id_mask, count(id_mask))
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(id_logits, axis=-1), "int32"), id_labels), "float32")
        acc_id = losses.masked_mean(hits, id_mask, count(id_mask))
        l_kd = losses.masked_mean(losses.distillation_loss(embedding, teacher), teacher_mask, count(teacher_mask))
        l_expr = losses.masked_mean(losses.soft_cross_entropy(expr, expr_logits), expr_mask, count(expr_mask))
        expr_hits = ops.cast(ops.equal(ops.argmax(expr_logits, axis=-1), ops.argmax(expr, axis=-1)), "float32")
        acc_expr = losses.masked_mean(expr_hits, expr_mask, count(expr_mask))
        if self.happy_index is not None:
            p_happy = ops.softmax(expr_logits, axis=-1)[:, self.happy_index]
            l_smile = losses.masked_mean(losses.binary_probability_loss(p_happy, smile), smile_mask,
                                         count(smile_mask))
        else:
            l_smile = ops.convert_to_tensor(0.0, "float32")
        w = self.weights
        wd = self._weight_decay(replicas, self.term.regularization())
        loss = w.identity * l_id + w.distill * l_kd + w.expression * l_expr + w.smiling * l_smile + wd
        logs = {"loss": loss, "l_id": l_id, "acc_id": acc_id, "l_kd": l_kd, "l_expr": l_expr,
                "acc_expr": acc_expr, "l_smile": l_smile, "weight_decay": wd}
        return StepOutput(loss, logs, None)
