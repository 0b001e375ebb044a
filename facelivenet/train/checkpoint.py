"""Training checkpoints: every variable of a run plus where it stopped.

A checkpoint is a folder ``WORK/checkpoint`` with ``variables.npz`` (the values of an
ordered list of variables: network with batch-norm statistics and dropout RNG state,
identity head, centers, optimizer slots and iteration counters) and ``state.json``
(epoch, step within the epoch, global step, best metric, and a fingerprint of the
run's settings). Both are written to a temporary folder that replaces the old one, so
an interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from keras import ops

from facelivenet.errors import TrainingError

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainState:
    """Where a run stands.

    Attributes:
        epoch: the epoch in progress (0-based).
        step: batches of ``epoch`` already done.
        global_step: batches done in the whole run.
        best_metric: best validation metric so far (None before any validation).
        best_epoch: the epoch that reached it.
        fingerprint: the settings that must not change across a resume.
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


def _names(variables: Sequence) -> list[str]:
    return [getattr(v, "path", None) or getattr(v, "name", str(i)) for i, v in enumerate(variables)]


def save_checkpoint(work_dir: str | os.PathLike, variables: Sequence, state: TrainState) -> Path:
    """Write ``variables`` and ``state`` to ``work_dir/checkpoint`` (replacing it as a whole)."""
    work = Path(work_dir)
    final = work / CHECKPOINT_DIR
    tmp = work / (CHECKPOINT_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    arrays = {f"v{i:05d}": np.asarray(ops.convert_to_numpy(v)) for i, v in enumerate(variables)}
    np.savez(tmp / "variables.npz", **arrays)
    (tmp / "names.json").write_text(json.dumps(_names(variables)))
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1))
    old = work / (CHECKPOINT_DIR + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def has_checkpoint(work_dir: str | os.PathLike) -> bool:
    return (Path(work_dir) / CHECKPOINT_DIR / "state.json").is_file()


def load_state(work_dir: str | os.PathLike) -> TrainState:
    """The :class:`TrainState` of the checkpoint in ``work_dir``."""
    path = Path(work_dir) / CHECKPOINT_DIR / "state.json"
    try:
        return TrainState(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise TrainingError(f"{path.parent}: no checkpoint to resume from") from None
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint state ({exc})") from None


def restore_variables(work_dir: str | os.PathLike, variables: Sequence) -> None:
    """Assign the checkpoint's values to ``variables`` (same order, shapes and count).

    Raises:
        TrainingError: the checkpoint holds a different set of variables (another
            architecture, stage or optimizer).
    """
    folder = Path(work_dir) / CHECKPOINT_DIR
    try:
        data = np.load(folder / "variables.npz")
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{folder}: unreadable checkpoint ({exc})") from None
    with data:
        if len(data.files) != len(variables):
            raise TrainingError(
                f"{folder}: checkpoint holds {len(data.files)} variables, this run has {len(variables)} "
                "(different model, stage or optimizer)"
            )
        for i, var in enumerate(variables):
            value = data[f"v{i:05d}"]
            if tuple(value.shape) != tuple(var.shape):
                raise TrainingError(
                    f"{folder}: variable {_names([var])[0]} has shape {tuple(var.shape)}, "
                    f"checkpoint has {tuple(value.shape)}"
                )
            var.assign(value)
