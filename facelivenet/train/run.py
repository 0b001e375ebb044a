"""The three training commands as library functions: one config in, one result out.

- :func:`train_verification`: stage 1 on an identity dataset (folders = identities),
  validated on held-out identities (pair accuracy) and optionally on an LFW pairs file.
- :func:`train_expression`: stage 2 on an expression dataset (folders = expressions),
  split by subject (or a separate validation folder).
- :func:`train_multitask`: FaceLiveNet+ on data with subjects in the file names and
  expressions as folders (CK+), split by subject.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from facelivenet.config import NetworkConfig
from facelivenet.data.datasets import (
    LabeledImages, align_classes, scan_class_folders, split_by_group, with_subjects,
)
from facelivenet.data.pairs import read_pairs, resolve_pair_images, sample_pairs
from facelivenet.data.schedule import LRSchedule, read_lr_schedule
from facelivenet.errors import DatasetError
from facelivenet.eval.metrics import kfold_accuracy, squared_l2_distances
from facelivenet.models.io import load_network
from facelivenet.models.network import FaceLiveNet
from facelivenet.train.config import ExpressionConfig, MultitaskConfig, TrainConfig, VerificationConfig
from facelivenet.train.logs import plot_multitask
from facelivenet.train.loop import OnStep, TrainData, TrainResult, run_training
from facelivenet.train.stages import ExpressionStage, MultitaskStage, VerificationStage, with_config

#: Most validation pairs sampled from held-out identities each epoch.
MAX_VAL_PAIRS = 3000
#: Batch size of the validation forward passes.
EVAL_BATCH = 64


# --- shared helpers ---------------------------------------------------------------------

def _schedule(cfg: TrainConfig) -> LRSchedule:
    return read_lr_schedule(cfg.lr_schedule) if cfg.lr_schedule else LRSchedule.constant(cfg.learning_rate)


def _fresh_network(cfg, expression_classes: Sequence[str] | None = None) -> FaceLiveNet:
    overrides = dict(
        width=cfg.width, embedding_size=cfg.embedding_size, image_size=cfg.image_size, weight_decay=cfg.weight_decay,
        dropout=cfg.dropout, standardization=cfg.standardization,
    )
    if expression_classes is not None:
        overrides["expression_classes"] = tuple(expression_classes)
    return FaceLiveNet(NetworkConfig.from_preset(cfg.preset, **overrides))


def _with_classes(net: FaceLiveNet, classes: Sequence[str]) -> FaceLiveNet:
    """``net`` itself when it already has these expression classes, else a copy with them."""
    if tuple(net.network_config.expression_classes) == tuple(classes):
        return net
    return with_config(net, expression_classes=tuple(classes))


class _Outputs:
    """(embeddings, expression probabilities) of image files, with the forward compiled once per network."""

    def __init__(self) -> None:
        self._net = None
        self._forward = None

    def __call__(self, net: FaceLiveNet, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from facelivenet.data import tfdata
        from facelivenet.models.compiled import compile_forward

        if net is not self._net:
            self._net, self._forward = net, compile_forward(net)
        embs, probs = [], []
        for batch in tfdata.eval_dataset(paths, image_size=net.network_config.image_size, batch_size=EVAL_BATCH):
            e, p = self._forward(batch.numpy())
            embs.append(np.asarray(e, np.float32))
            probs.append(np.asarray(p, np.float32))
        return np.concatenate(embs), np.concatenate(probs)


def _pair_accuracy(embeddings: np.ndarray, groups: np.ndarray, seed: int) -> float | None:
    a, b, same = sample_pairs(groups, MAX_VAL_PAIRS, seed=seed)
    if len(a) < 20:
        return None
    d = squared_l2_distances(embeddings[a], embeddings[b])
    return kfold_accuracy(d, same, n_folds=10).accuracy


def _expression_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "val_accuracy": float(np.mean(np.argmax(probs, axis=1) == labels)),
        "val_loss": float(-np.mean(np.log(p))),
    }


def _summary(data: LabeledImages, what: str) -> dict:
    return {"images": len(data), what: len(data.group_names()), "classes": len(data.class_names)}


# --- stage 1 ----------------------------------------------------------------------------

def train_verification(cfg: VerificationConfig, *, on_step: OnStep | None = None) -> TrainResult:
    """Stage 1: stem + branch 1, softmax over identities + alpha * class-wise triplet (or center) loss.

    Identities (class folders) are split into training and validation; validation is
    the k-fold pair accuracy on held-out identities (``val_pair_accuracy``) and, with
    ``val_pairs``/``val_images``, the LFW-protocol accuracy (``lfw_accuracy``, then the
    metric that picks the best model).
    """
    data = scan_class_folders(cfg.data, min_images_per_class=cfg.min_images_per_class)
    train, val = split_by_group(data, cfg.val_fraction, cfg.seed)
    labels, identities = train.group_labels()
    lfw = None
    if cfg.val_pairs:
        pairs = read_pairs(cfg.val_pairs)
        lfw = (pairs, *resolve_pair_images(pairs, cfg.val_images))
    schedule = _schedule(cfg)

    def build():
        keras.utils.set_random_seed(cfg.seed)
        net = load_network(cfg.model) if cfg.model else _fresh_network(cfg)
        return VerificationStage(net, len(identities), cfg.loss)

    val_groups = val.group_labels()[0]
    _outputs = _Outputs()

    def validate(stage) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if len(val):
            emb, _ = _outputs(stage.net, val.paths)
            acc = _pair_accuracy(emb, val_groups, cfg.seed)
            if acc is not None:
                metrics["val_pair_accuracy"] = acc
        if lfw is not None:
            pairs, paths, first, second = lfw
            emb, _ = _outputs(stage.net, paths)
            d = squared_l2_distances(emb[first], emb[second])
            metrics["lfw_accuracy"] = kfold_accuracy(d, pairs.issame, n_folds=pairs.folds).accuracy
        return metrics

    fingerprint = {
        "stage": "verification", "identities": list(identities), "images": len(train),
        "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": cfg.optimizer,
        "precision": cfg.precision, "loss": cfg.loss.kind, "model": cfg.model,
        "architecture": None if cfg.model else [cfg.preset, cfg.embedding_size, cfg.image_size],
    }
    result = run_training(
        cfg, build_stage=build, data=TrainData(train.paths, labels), schedule=schedule,
        validate=validate, metric="lfw_accuracy" if lfw else "val_pair_accuracy",
        fingerprint=fingerprint, on_step=on_step,
    )
    _write_names(result.work_dir / "identities.txt", identities)
    return result


# --- stage 2 ----------------------------------------------------------------------------

def _expression_split(cfg, require_subjects: bool) -> tuple[LabeledImages, LabeledImages, tuple[str, ...]]:
    data = with_subjects(scan_class_folders(cfg.data), cfg.subject_regex, required=require_subjects)
    if getattr(cfg, "val_data", None):
        val = align_classes(scan_class_folders(cfg.val_data), data.class_names, cfg.val_data)
        return data, val, data.class_names
    train, val = split_by_group(data, cfg.val_fraction, cfg.seed)
    return train, val, data.class_names


def train_expression(cfg: ExpressionConfig, *, on_step: OnStep | None = None) -> TrainResult:
    """Stage 2: branch 2 initialised from branch 1, trained on expressions.

    With a stage-1 model the stem and branch 1 are frozen; ``from_scratch`` trains a
    fresh network end to end. The loss is softmax cross-entropy, plus
    ``center_loss_factor`` x center loss on branch 2's 128-d features when > 0. The
    final model's expression classes are the dataset's folder names.
    """
    if not cfg.from_scratch:
        load_network(cfg.model)  # fail early, before any work, on a bad model file
    train, val, classes = _expression_split(cfg, require_subjects=False)
    schedule = _schedule(cfg)

    def build():
        keras.utils.set_random_seed(cfg.seed)
        if cfg.from_scratch:
            net = _fresh_network(cfg, classes)
        else:
            net = _with_classes(load_network(cfg.model), classes)
            if not cfg.keep_branch2:
                net.copy_branch1_to_branch2()
        return ExpressionStage(
            net, train_all=cfg.from_scratch or cfg.train_all, center_factor=cfg.center_loss_factor,
            center_rate=1.0 - cfg.center_loss_alfa,
        )

    _outputs = _Outputs()

    def validate(stage) -> dict[str, float]:
        if not len(val):
            return {}
        _, probs = _outputs(stage.net, val.paths)
        return _expression_metrics(probs, val.labels)

    fingerprint = {
        "stage": "expression", "classes": list(classes), "images": len(train),
        "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": cfg.optimizer,
        "precision": cfg.precision, "model": cfg.model, "center_loss": cfg.center_loss_factor > 0,
        "train_all": cfg.train_all, "keep_branch2": cfg.keep_branch2,
        "architecture": [cfg.preset, cfg.embedding_size, cfg.image_size] if cfg.from_scratch else None,
    }
    return run_training(
        cfg, build_stage=build, data=TrainData(train.paths, train.labels), schedule=schedule,
        validate=validate, metric="val_accuracy", fingerprint=fingerprint, on_step=on_step,
    )


# --- FaceLiveNet+ ------------------------------------------------------------------------

def train_multitask(cfg: MultitaskConfig, *, on_step: OnStep | None = None) -> TrainResult:
    """FaceLiveNet+ joint training with dynamic task weights (see :class:`MultitaskStage`).

    Folders are expressions, the subject in each file name is the identity; subjects
    are split into training and validation. Validation: expression accuracy and pair
    accuracy on held-out subjects; their mean (``val_score``) picks the best model.
    Writes ``task_weights.png`` (w1, w2, L1, L2 per step) in the work folder.
    """
    load_network(cfg.model)  # fail early on a bad model file
    train, val, classes = _expression_split(cfg, require_subjects=True)
    id_labels, subjects = train.group_labels()
    if len(subjects) < 2:
        raise DatasetError(f"{cfg.data}: multi-task training needs at least 2 training subjects")
    labels = np.stack([id_labels, train.labels], axis=1).astype(np.int32)
    schedule = _schedule(cfg)

    def build():
        keras.utils.set_random_seed(cfg.seed)
        net = _with_classes(load_network(cfg.model), classes)
        if not cfg.keep_branch2:
            net.copy_branch1_to_branch2()
        return MultitaskStage(net, len(subjects), cfg.loss)

    val_groups = val.group_labels()[0] if len(val) else None
    _outputs = _Outputs()

    def validate(stage) -> dict[str, float]:
        if not len(val):
            return {}
        emb, probs = _outputs(stage.net, val.paths)
        metrics = _expression_metrics(probs, val.labels)
        pair = _pair_accuracy(emb, val_groups, cfg.seed)
        if pair is not None:
            metrics["val_pair_accuracy"] = pair
        metrics["val_score"] = float(np.mean([metrics["val_accuracy"]] + ([pair] if pair is not None else [])))
        return metrics

    fingerprint = {
        "stage": "multitask", "classes": list(classes), "subjects": list(subjects), "images": len(train),
        "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": cfg.optimizer,
        "precision": cfg.precision, "model": cfg.model, "loss": cfg.loss.kind,
    }
    return run_training(
        cfg, build_stage=build, data=TrainData(train.paths, labels), schedule=schedule,
        validate=validate, metric="val_score", fingerprint=fingerprint, weight_lr=cfg.weight_lr,
        after_epoch=lambda work: plot_multitask(work / "steps.csv", work / "task_weights.png"),
        on_step=on_step,
    )


def _write_names(path: Path, names: Sequence[str]) -> None:
    from facelivenet.utils import atomic_write_text

    if path.parent.exists():
        atomic_write_text(path, "".join(f"{n}\n" for n in names))


__all__ = ["train_verification", "train_expression", "train_multitask", "TrainResult"]
