"""The training loop shared by every stage (TensorFlow: tf.function steps, tf.distribute).

:func:`run_training` builds the stage and its optimizers inside the strategy's scope
and the precision policy, then for each epoch: sets the learning rate from the
schedule, runs the steps (each reported to a ``Reporter``, a CSV row and TensorBoard
scalars per step), validates, writes the epoch row, saves a checkpoint, keeps the best model by
the validation metric. Ctrl-C finishes the current step, saves a checkpoint at that
exact step and raises ``KeyboardInterrupt``; ``resume`` continues from it. The final
network is saved to ``out``.

Its parts: :mod:`~facelivenet.train.progress` (reporting, Ctrl-C),
:mod:`~facelivenet.train.steps` (optimizers, the distributed step, batch-norm
calibration), :mod:`~facelivenet.train.epochs` (an epoch's steps and its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from facelivenet.data import tfdata
from facelivenet.data.schedule import LRSchedule
from facelivenet.errors import TrainingError
from facelivenet.models.io import save_network
from facelivenet.train import checkpoint as ckpt
from facelivenet.train.distribute import is_chief, make_strategy, precision_policy
from facelivenet.train.epochs import Epochs, TrainData
from facelivenet.train.logs import CsvLog, TensorBoard
from facelivenet.train.options import TrainConfig
from facelivenet.train.progress import OnStep, Reporter, StderrReporter, StopRequest
from facelivenet.train.stages import Stage
from facelivenet.train.steps import BatchNormCalibrator, make_optimizer, make_step

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
        train_step = make_step(stage, optimizer, unit_optimizer, strategy, cfg.batch_size)
        calibrate = BatchNormCalibrator(stage)

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
        run = Epochs(
            cfg=cfg, stage=stage, data=data, strategy=strategy, chief=chief, state=state,
            train_step=train_step, calibrate=calibrate, validate=validate, metric=metric,
            steps=min(full_steps, cfg.steps_per_epoch or full_steps), steps_log=steps_log,
            epochs_log=epochs_log, board=board, best_path=best_path, save_state=lambda: ckpt.save_checkpoint(
                work, variables, state), after_epoch=after_epoch, on_step=on_step, reporter=reporter,
        )
        try:
            with StopRequest() as stop, tfdata.image_errors():
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
