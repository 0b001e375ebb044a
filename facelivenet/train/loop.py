"""The training loop shared by every stage (TensorFlow: tf.function steps, tf.distribute).

:func:`run_training` builds the stage and its optimizers inside the strategy's scope
and the precision policy, then for each epoch: sets the learning rate from the
schedule, runs the steps (progress bar on stderr, a CSV row and TensorBoard scalars per
step), validates, writes the epoch row, saves a checkpoint, keeps the best model by
the validation metric. Ctrl-C finishes the current step, saves a checkpoint at that
exact step and raises ``KeyboardInterrupt``; ``resume`` continues from it. The final
network is saved to ``out``.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import keras
import numpy as np
import tensorflow as tf

from facelivenet.data import tfdata
from facelivenet.data.schedule import LRSchedule
from facelivenet.errors import TrainingError
from facelivenet.models.io import save_network
from facelivenet.train import checkpoint as ckpt
from facelivenet.train.options import TrainConfig
from facelivenet.train.distribute import distribute_options, is_chief, make_strategy, precision_policy
from facelivenet.train.logs import CsvLog, TensorBoard
from facelivenet.train.stages import Stage

OnStep = Callable[[int, Mapping[str, float]], None]


@dataclass(frozen=True)
class TrainData:
    """Training samples: image paths and (N,) or (N, M) int labels.

    ``batches``, when given, makes one epoch's batches instead of
    :func:`facelivenet.data.tfdata.training_dataset` (joint training's pipeline):
    ``batches(epoch=, seed=, skip_batches=, batch_size=, image_size=)``.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    batches: Callable[..., Any] | None = None


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        model: the final model file.
        best_model: the best model by ``metric`` (None without validation).
        metric: name of the validation metric that picks the best model.
        best_metric, best_epoch: its best value and the (0-based) epoch.
        epochs: per-epoch rows (train means, validation metrics, seconds).
        global_step: training steps done.
        work_dir: checkpoints and logs.
    """

    model: Path
    best_model: Path | None
    metric: str
    best_metric: float | None
    best_epoch: int | None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    global_step: int = 0
    work_dir: Path | None = None


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


class _StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a flag checked between steps; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Reporter(Protocol):
    """Where a training run reports its progress (the CLI draws a progress bar)."""

    def epoch_start(self, label: str, length: int, start: int) -> None:
        """An epoch of ``length`` steps begins (``start`` already done when resuming)."""

    def step(self, text: str) -> None:
        """One step is done; ``text`` holds the latest loss and metrics."""

    def epoch_end(self) -> None:
        """The epoch's steps are done."""

    def message(self, text: str) -> None:
        """A line for the user (epoch summaries, where a checkpoint went)."""


class StderrReporter:
    """The library's default: a line per epoch and per ``every`` steps on stderr (none when quiet)."""

    def __init__(self, quiet: bool = False, every: int = 50):
        self.quiet, self.every = quiet, every
        self._label, self._length, self._done = "", 0, 0

    def epoch_start(self, label: str, length: int, start: int) -> None:
        self._label, self._length, self._done = label, length, start

    def step(self, text: str) -> None:
        self._done += 1
        if not self.quiet and (self._done % self.every == 0 or self._done == self._length):
            print(f"{self._label}: step {self._done}/{self._length} {text}", file=sys.stderr, flush=True)

    def epoch_end(self) -> None:
        pass

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def _bar_text(logs: Mapping[str, float]) -> str:
    keys = [k for k in ("loss", "acc_id", "acc_expr", "w1", "w2") if k in logs]
    return " ".join(f"{k} {logs[k]:.4g}" for k in keys)


class _BatchNormCalibrator:
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


def _make_step(stage: Stage, optimizer, unit_optimizer, strategy, global_batch: int):
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


@dataclass
class _Epochs:
    """One run's epoch mechanics: the steps of an epoch, then its end (calibration,
    validation, logs, best model, checkpoint). ``state`` is updated in place."""

    cfg: TrainConfig
    stage: Stage
    data: TrainData
    strategy: Any
    chief: bool
    state: ckpt.TrainState
    train_step: Callable
    calibrate: _BatchNormCalibrator
    validate: Callable[[Stage], dict[str, float]] | None
    metric: str
    steps: int
    steps_log: CsvLog
    epochs_log: CsvLog
    board: TensorBoard
    best_path: Path
    save_state: Callable[[], Any]
    after_epoch: Callable[[Path], None] | None
    on_step: OnStep | None
    reporter: Reporter
    history: list[dict[str, Any]] = field(default_factory=list)
    _sums: dict[str, float] = field(default_factory=dict)
    _done: int = 0
    _t0: float = 0.0
    _seconds: float = 0.0

    def _batches(self, epoch: int, seed: int, skip: int, count: int):
        if self.data.batches is not None:
            return self.data.batches(
                epoch=epoch, seed=seed, skip_batches=skip, batch_size=self.cfg.batch_size,
                image_size=self.stage.net.network_config.image_size,
            ).take(count)
        return tfdata.training_dataset(
            self.data.paths, self.data.labels, image_size=self.stage.net.network_config.image_size,
            batch_size=self.cfg.batch_size, seed=seed, epoch=epoch, skip_batches=skip,
            random_crop=self.cfg.random_crop, flip=self.cfg.flip,
        ).take(count)

    def train(self, epoch: int, lr: float, stop: _StopRequest) -> None:
        """The remaining steps of ``epoch``; raises KeyboardInterrupt after the step a Ctrl-C fell in."""
        cfg, state = self.cfg, self.state
        start = state.step
        ds = self._batches(epoch, cfg.seed, start, self.steps - start)
        dist = self.strategy.experimental_distribute_dataset(distribute_options(ds))
        self.reporter.epoch_start(f"epoch {epoch + 1}/{cfg.epochs}", self.steps, start)
        self._sums, self._done, self._t0 = {}, 0, time.perf_counter()
        try:
            for images, labels in dist:
                logs = {k: float(v) for k, v in self.train_step(images, labels).items()}
                state.step += 1
                state.global_step += 1
                self._done += 1
                if not math.isfinite(logs["loss"]) and cfg.precision != "fp16":
                    raise TrainingError(
                        f"loss became {logs['loss']} at step {state.global_step}; lower the learning rate"
                    )
                for k, v in logs.items():
                    self._sums[k] = self._sums.get(k, 0.0) + v
                if self.chief:
                    self.steps_log.write({"epoch": epoch, "step": state.global_step, "lr": lr, **logs})
                    self.board.scalars(logs, state.global_step, "train/")
                self.reporter.step(_bar_text(logs))
                if self.on_step is not None:
                    self.on_step(state.global_step, logs)
                if stop.requested:
                    raise KeyboardInterrupt
        finally:
            self.reporter.epoch_end()
        self._seconds = time.perf_counter() - self._t0

    def finish(self, epoch: int, lr: float) -> dict[str, Any]:
        """Calibrate, validate, log, keep the best model, checkpoint; returns the epoch row."""
        cfg, state = self.cfg, self.state
        if cfg.bn_batches:
            self.calibrate(self._batches(epoch, cfg.seed + 1, 0, cfg.bn_batches))
        row: dict[str, Any] = {"epoch": epoch, "lr": lr}
        row.update({k: v / max(self._done, 1) for k, v in self._sums.items()})
        row["images_per_s"] = self._done * cfg.batch_size / max(self._seconds, 1e-9)
        metrics = self.validate(self.stage) if self.validate is not None else {}
        row.update(metrics)
        row["seconds"] = time.perf_counter() - self._t0
        value = metrics.get(self.metric)
        state.epoch, state.step = epoch + 1, 0
        if value is not None and (state.best_metric is None or value > state.best_metric):
            state.best_metric, state.best_epoch = float(value), epoch
            if self.chief:
                save_network(self.stage.net, self.best_path)
        if self.chief:
            self.epochs_log.write(row)
            self.board.scalars(metrics, state.global_step, "val/")
            self.save_state()
            if self.after_epoch is not None:
                self.after_epoch(self.cfg.work_path)
        self.history.append(row)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.reporter.message(f"epoch {epoch + 1}: loss {row.get('loss', float('nan')):.4f}"
                              + (f", {shown}" if shown else ""))
        return row


def run_training(
    cfg: TrainConfig,
    *,
    build_stage: Callable[[], Stage],
    data: TrainData,
    schedule: LRSchedule,
    validate: Callable[[Stage], dict[str, float]] | None,
    metric: str,
    fingerprint: Mapping[str, Any],
    weight_lr: float | None = None,
    after_epoch: Callable[[Path], None] | None = None,
    on_step: OnStep | None = None,
    reporter: Reporter | None = None,
) -> TrainResult:
    """Train the stage that ``build_stage`` builds; see the module doc for the protocol.

    Args:
        build_stage: called inside the strategy scope and precision policy.
        validate: epoch-end metrics of the stage's network (may return {}).
        metric: key of ``validate``'s result that picks the best model (higher is better).
        fingerprint: settings a resumed run must share with the checkpoint.
        weight_lr: learning rate of the stage's unit optimizer (multi-task).
        after_epoch: called with the work folder after each epoch's logs are written.
        on_step: called after each step with (global step, logs) (tests, monitoring).
        reporter: where progress goes (default :class:`StderrReporter`, silent when
            ``cfg.quiet``; the CLI passes a progress bar).

    Raises:
        TrainingError: the work folder holds a checkpoint and ``resume`` is off, there is
            nothing to resume, the checkpoint does not fit, or the loss became NaN.
    """
    work = cfg.work_path
    reporter = reporter if reporter is not None else StderrReporter(cfg.quiet)
    if cfg.resume and not ckpt.has_checkpoint(work):
        raise TrainingError(f"{work}: no checkpoint to resume from")
    if not cfg.resume and ckpt.has_checkpoint(work):
        raise TrainingError(
            f"{work}: holds a checkpoint of an earlier run; pass --resume to continue it, "
            "or use another --work-dir"
        )
    fingerprint = dict(fingerprint)
    strategy = make_strategy(cfg.strategy)
    chief = is_chief(strategy)
    fingerprint["replicas"] = strategy.num_replicas_in_sync

    with precision_policy(cfg.precision), strategy.scope():
        stage = build_stage()
        optimizer = make_optimizer(cfg.optimizer, schedule.lr_at(0) or cfg.learning_rate)
        if cfg.precision == "fp16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(stage.trainable_variables())
        unit_optimizer = None
        if stage.unit_variables():
            unit_optimizer = keras.optimizers.SGD(weight_lr or 0.1)
            unit_optimizer.build(stage.unit_variables())
        variables = (stage.state_variables() + list(optimizer.variables)
                     + (list(unit_optimizer.variables) if unit_optimizer else []))
        state = ckpt.TrainState(fingerprint=_jsonable(fingerprint))
        if cfg.resume:
            state = ckpt.load_state(work)
            if state.fingerprint != _jsonable(fingerprint):
                diff = sorted(k for k in set(state.fingerprint) | set(fingerprint)
                              if state.fingerprint.get(k) != _jsonable(fingerprint).get(k))
                raise TrainingError(f"{work}: checkpoint was made with other settings ({', '.join(diff)}); cannot resume")
            ckpt.restore_variables(work, variables)
        train_step = _make_step(stage, optimizer, unit_optimizer, strategy, cfg.batch_size)
        calibrate = _BatchNormCalibrator(stage)

        work.mkdir(parents=True, exist_ok=True)
        steps_log = CsvLog(work / "steps.csv", resume=cfg.resume)
        epochs_log = CsvLog(work / "epochs.csv", resume=cfg.resume)
        if cfg.resume:
            steps_log.truncate("step", state.global_step)
            epochs_log.truncate("epoch", state.epoch - 1)
        board = TensorBoard(work / "tensorboard" if chief else None)
        best_path = work / "best.keras"
        if not cfg.resume and best_path.exists():
            best_path.unlink()  # left by an earlier run that never reached a checkpoint
        n = len(data.paths)
        full_steps = tfdata.steps_per_epoch(n, cfg.batch_size)
        if full_steps == 0:
            raise TrainingError(f"{n} training images are fewer than one batch of {cfg.batch_size}")
        run = _Epochs(
            cfg=cfg, stage=stage, data=data, strategy=strategy, chief=chief, state=state,
            train_step=train_step, calibrate=calibrate, validate=validate, metric=metric,
            steps=min(full_steps, cfg.steps_per_epoch or full_steps), steps_log=steps_log,
            epochs_log=epochs_log, board=board, best_path=best_path, save_state=lambda: ckpt.save_checkpoint(
                work, variables, state), after_epoch=after_epoch, on_step=on_step, reporter=reporter,
        )
        try:
            with _StopRequest() as stop, tfdata.image_errors():
                for epoch in range(state.epoch, cfg.epochs):
                    lr = schedule.lr_at(epoch)
                    if lr is None:
                        break
                    optimizer.learning_rate = lr
                    run.train(epoch, lr, stop)
                    run.finish(epoch, lr)
                    if stop.requested:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if chief:
                ckpt.save_checkpoint(work, variables, state)
                reporter.message(
                    f"interrupted at epoch {state.epoch + 1}, step {state.step}: checkpoint saved in "
                    f"{work / ckpt.CHECKPOINT_DIR}; run again with --resume to continue"
                )
            raise
        finally:
            board.close()
        out = Path(cfg.out)
        if chief:
            save_network(stage.net, out)
        history = run.history
    return TrainResult(
        model=out,
        best_model=best_path if best_path.exists() else None,
        metric=metric,
        best_metric=state.best_metric,
        best_epoch=state.best_epoch,
        epochs=history,
        global_step=state.global_step,
        work_dir=work,
    )


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(d, default=str))
