"""One run's epochs: the steps of an epoch, then its end (TensorFlow: tf.distribute).

An epoch's steps come from the run's data (resuming mid-epoch skips the batches already
done), each one logged to ``steps.csv`` and TensorBoard and reported; its end calibrates
the batch norms, validates, writes the ``epochs.csv`` row, keeps the best model by the
validation metric and saves a checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facelivenet.data import tfdata
from facelivenet.errors import TrainingError
from facelivenet.models.io import save_network
from facelivenet.train import checkpoint as ckpt
from facelivenet.train.distribute import distribute_options
from facelivenet.train.logs import CsvLog, TensorBoard
from facelivenet.train.options import TrainConfig
from facelivenet.train.progress import OnStep, Reporter, StopRequest, step_text
from facelivenet.train.stages import Stage
from facelivenet.train.steps import BatchNormCalibrator


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
class Epochs:
    """One run's epoch mechanics: the steps of an epoch, then its end (calibration,
    validation, logs, best model, checkpoint). ``state`` is updated in place."""

    cfg: TrainConfig
    stage: Stage
    data: TrainData
    strategy: Any
    chief: bool
    state: ckpt.TrainState
    train_step: Callable
    calibrate: BatchNormCalibrator
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

    def train(self, epoch: int, lr: float, stop: StopRequest) -> None:
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
                self.reporter.step(step_text(logs))
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
