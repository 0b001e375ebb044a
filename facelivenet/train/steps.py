"""One training step and what surrounds it: the optimizers, the distributed step
function, and the batch-norm calibration run before each validation (TensorFlow only).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from facelivenet.errors import TrainingError
from facelivenet.train.stages import Stage


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer for ``--optimizer NAME`` (facenet's settings: Adam epsilon 0.1, RMSProp
    decay 0.9 / momentum 0.9 / epsilon 1, momentum 0.9)."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, epsilon=0.1)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, rho=0.9, momentum=0.9, epsilon=1.0)
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate, initial_accumulator_value=0.1)
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate, rho=0.9, epsilon=1e-6)
    raise TrainingError(f"unknown optimizer {name!r}")


def make_step(stage: Stage, optimizer, unit_optimizer, strategy, global_batch: int):
    """The distributed ``train_step(images, labels) -> logs`` of ``stage``: each replica
    computes its share of the loss (scaled by its batch over ``global_batch``), applies the
    main optimizer and, for multi-task, the unit optimizer to the task weights; the logs
    and the center statistics are summed over replicas and the centers updated once."""
    main_vars = stage.trainable_variables()
    unit_vars = stage.unit_variables()
    replicas = strategy.num_replicas_in_sync

    def replica_step(images, labels):
        ctx = tf.distribute.get_replica_context()

        def reduce(t):
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, t)

        scale = tf.cast(tf.shape(images)[0], tf.float32) / float(global_batch)
        with tf.GradientTape(persistent=bool(unit_vars)) as tape:
            out = stage.step(images, labels, scale=scale, replicas=replicas, reduce=reduce)
            scaled = optimizer.scale_loss(out.loss)
        grads = tape.gradient(scaled, main_vars)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, main_vars) if g is not None])
        if unit_vars:
            unit_grads = tape.gradient(out.unit_loss, unit_vars)
            unit_optimizer.apply_gradients(list(zip(unit_grads, unit_vars)))
        del tape
        stats = tuple(out.center_stats) if out.center_stats is not None else ()
        return out.logs, stats

    @tf.function
    def train_step(images, labels):
        logs, stats = strategy.run(replica_step, args=(images, labels))
        sum_op = tf.distribute.ReduceOp.SUM
        logs = {k: strategy.reduce(sum_op, v, axis=None) for k, v in logs.items()}
        if stats:
            sum_diff = strategy.reduce(sum_op, stats[0], axis=None)
            counts = strategy.reduce(sum_op, stats[1], axis=None)
            stage.update_centers(sum_diff, counts)
        return logs

    return train_step


class BatchNormCalibrator:
    """Re-estimates the trainable batch norms' inference statistics ("precise BN").

    With the papers' decay of 0.995 the moving averages need several hundred steps to
    forget their initial values (0 and 1), so a short run, or the first epochs of a
    long one, would validate and save a model whose inference statistics are not those
    of its weights. This runs the training forward over ``batches`` batches with the
    decay set to 0 (so each pass leaves that batch's statistics), averages them, and
    assigns the averages. Only trainable batch norms change (frozen ones keep theirs).
    Training itself uses batch statistics and is not affected.
    """

    def __init__(self, stage: Stage):
        bn = keras.layers.BatchNormalization
        self.layers = [l for l in stage.body.layers if isinstance(l, bn) and l.trainable]
        self._forward = None
        self.body = stage.body

    def __call__(self, batches) -> int:
        if not self.layers:
            return 0
        if self._forward is None:
            saved = [l.momentum for l in self.layers]
            for l in self.layers:
                l.momentum = 0.0
            body = self.body

            @tf.function
            def forward(images):
                body(images, training=True)

            forward.get_concrete_function(tf.TensorSpec(self.body.input.shape, tf.uint8))
            for l, m in zip(self.layers, saved):
                l.momentum = m
            self._forward = forward
        sums = None
        n = 0
        for images, _ in batches:
            self._forward(images)
            stats = [(l.moving_mean.numpy(), l.moving_variance.numpy()) for l in self.layers]
            sums = stats if sums is None else [(a + m, b + v) for (a, b), (m, v) in zip(sums, stats)]
            n += 1
        if n:
            for l, (m, v) in zip(self.layers, sums):
                l.moving_mean.assign(m / n)
                l.moving_variance.assign(v / n)
        return n
