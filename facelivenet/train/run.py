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
from facelivenet.errors import ConfigError, DatasetError
from facelivenet.eval.metrics import kfold_accuracy, squared_l2_distances
from facelivenet.models.io import load_network
from facelivenet.models.network import FaceLiveNet
from facelivenet.train.logs import plot_multitask
from facelivenet.train.loop import TrainData, TrainResult, run_training
from facelivenet.train.options import ExpressionConfig, MultitaskConfig, TrainConfig, VerificationConfig
from facelivenet.train.progress import OnStep, Reporter
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

def train_verification(cfg: VerificationConfig, *, on_step: OnStep | None = None,
                       reporter: Reporter | None = None) -> TrainResult:
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
        fingerprint=fingerprint, on_step=on_step, reporter=reporter,
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


def train_expression(cfg: ExpressionConfig, *, on_step: OnStep | None = None,
                       reporter: Reporter | None = None) -> TrainResult:
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
        validate=validate, metric="val_accuracy", fingerprint=fingerprint, on_step=on_step, reporter=reporter,
    )


# --- FaceLiveNet+ ------------------------------------------------------------------------

def train_multitask(cfg: MultitaskConfig, *, on_step: OnStep | None = None,
                       reporter: Reporter | None = None) -> TrainResult:
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
        on_step=on_step, reporter=reporter,
    )


def _write_names(path: Path, names: Sequence[str]) -> None:
    from facelivenet.utils import atomic_write_text

    if path.parent.exists():
        atomic_write_text(path, "".join(f"{n}\n" for n in names))





# --- joint training ------------------------------------------------------------------------

def joint_targets(records, classes: Sequence[str], *, min_images: int, teacher: tuple[list[str], np.ndarray] | None,
                  embedding_size: int = 128):
    """The packed label matrix of :class:`JointLayout` for training records, and the identity names.

    Identities with at least ``min_images`` training images get a label; the teacher's
    embeddings are centred on their mean and normalised. Without a teacher the teacher
    columns (``embedding_size`` of them) are zeros with a zero mask.
    """
    from collections import Counter

    from facelivenet.train.stages import JointLayout
    from facelivenet.train.teacher import record_key

    counts = Counter(r.identity for r in records if r.identity is not None)
    identities = sorted(i for i, c in counts.items() if c >= min_images)
    index = {name: k for k, name in enumerate(identities)}
    tdim = embedding_size
    lookup: dict[str, np.ndarray] = {}
    if teacher is not None:
        keys, emb = teacher
        emb = emb - emb.mean(axis=0, keepdims=True)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        lookup = dict(zip(keys, emb))
        tdim = emb.shape[1]
    layout = JointLayout(len(classes), tdim)
    y = np.zeros((len(records), layout.width), np.float32)
    c = len(classes)
    for i, r in enumerate(records):
        y[i, 0] = index.get(r.identity, -1) if r.identity is not None else -1
        if r.expression is not None:
            y[i, 1 : 1 + c] = r.expression
            y[i, 1 + c] = 1.0
        if r.smiling is not None:
            y[i, 2 + c] = float(r.smiling)
            y[i, 3 + c] = 1.0
        t = lookup.get(record_key(r.path, r.landmarks)) if lookup else None
        if t is not None:
            y[i, 4 + c : 4 + c + tdim] = t
            y[i, 4 + c + tdim] = 1.0
    return y, identities, layout


def _joint_faces(net, records) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, expression probabilities) of records, warped as the runtime does (no jitter)."""
    from facelivenet.data.joint import load_face
    from facelivenet.models.compiled import compile_forward

    forward = compile_forward(net)
    size = net.network_config.image_size
    embs, probs = [], []
    for s in range(0, len(records), EVAL_BATCH):
        faces = np.stack([load_face(r.path, r.landmarks, size) for r in records[s : s + EVAL_BATCH]])
        e, p = forward(faces)
        embs.append(np.asarray(e, np.float32))
        probs.append(np.asarray(p, np.float32))
    return np.concatenate(embs), np.concatenate(probs)


def train_joint(cfg, *, on_step: OnStep | None = None,
                reporter: Reporter | None = None) -> TrainResult:
    """Joint training on a manifest (see :class:`facelivenet.train.stages.JointStage`).

    Validation each epoch: the 10-fold pair accuracy on held-out identities
    (``val_pair_accuracy``) and the expression accuracy on the held-out expression
    images against their majority label (``val_expression_accuracy``; FER+ majority on
    FER2013 validation, held-out performers and subjects); their mean (``val_score``)
    picks the best model. The saved model records the ``similarity`` geometry.
    """
    from facelivenet.config import FER2013_CLASSES
    from facelivenet.data import tfdata
    from facelivenet.data.joint import read_manifest
    from facelivenet.train.stages import JointStage, JointWeights
    from facelivenet.train.teacher import load_teacher_cache

    records = read_manifest(Path(cfg.data) / "manifest.jsonl")
    if cfg.model:
        load_network(cfg.model)  # fail early on a bad model file
    train = [r for r in records if r.split == "train"]
    val = [r for r in records if r.split == "val"]
    classes = tuple(FER2013_CLASSES)
    teacher = load_teacher_cache(cfg.teacher_cache) if cfg.teacher_cache else None
    dim = load_network(cfg.model).network_config.embedding_size if cfg.model else cfg.embedding_size
    if teacher is not None and teacher[1].shape[1] != dim:
        raise ConfigError(f"the teacher's embeddings are {teacher[1].shape[1]}-d and the network's {dim}-d: "
                          f"train with --embedding-size {teacher[1].shape[1]}")
    targets, identities, layout = joint_targets(train, classes, min_images=cfg.min_images_per_identity,
                                                teacher=teacher, embedding_size=dim)
    rng = np.random.default_rng(cfg.seed)
    val_id = [r for r in val if r.identity is not None]
    if len(val_id) > cfg.max_val_images:
        val_id = [val_id[i] for i in sorted(rng.choice(len(val_id), cfg.max_val_images, replace=False))]
    names = sorted({r.identity for r in val_id})
    val_groups = np.array([names.index(r.identity) for r in val_id])
    val_expr = [r for r in val if r.expression is not None]
    val_expr_labels = np.array([int(np.argmax(r.expression)) for r in val_expr])
    schedule = _schedule(cfg)
    weights = JointWeights(cfg.weight_identity, cfg.weight_distill if teacher else 0.0, cfg.weight_expression,
                           cfg.weight_smiling)

    def build():
        keras.utils.set_random_seed(cfg.seed)
        if cfg.model:
            net = load_network(cfg.model)
            net = with_config(net, alignment="similarity", expression_classes=classes)
        else:
            net = _fresh_network(cfg, classes)
            net = with_config(net, alignment="similarity")
        return JointStage(net, len(identities), cfg.loss, layout, weights, classes.index("happy"))

    def validate(stage) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if val_id:
            emb, _ = _joint_faces(stage.net, val_id)
            pair = _pair_accuracy(emb, val_groups, cfg.seed)
            if pair is not None:
                metrics["val_pair_accuracy"] = pair
        if val_expr:
            _, probs = _joint_faces(stage.net, val_expr)
            metrics["val_expression_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == val_expr_labels))
        if metrics:
            metrics["val_score"] = float(np.mean(list(metrics.values())))
        return metrics

    paths = tuple(r.path for r in train)
    marks = np.asarray([r.landmarks for r in train], np.float32)
    repeat_of = dict(cfg.source_repeats)
    repeats = np.array([repeat_of.get(r.source, 1) for r in train], np.int64) if repeat_of else None

    def batches(*, epoch, seed, skip_batches, batch_size, image_size):
        return tfdata.joint_dataset(paths, marks, targets, image_size=image_size, batch_size=batch_size,
                                    seed=seed, epoch=epoch, skip_batches=skip_batches, flip=cfg.flip,
                                    gray_share=cfg.gray_share, repeats=repeats)

    fingerprint = {
        "stage": "joint", "identities": len(identities), "images": len(train), "teacher": bool(teacher),
        "batch_size": cfg.batch_size, "seed": cfg.seed, "optimizer": cfg.optimizer,
        "precision": cfg.precision, "model": cfg.model, "loss": cfg.loss.kind,
        "weights": [weights.identity, weights.distill, weights.expression, weights.smiling],
        **({"source_repeats": [list(x) for x in cfg.source_repeats]} if cfg.source_repeats else {}),
        "architecture": None if cfg.model else [cfg.preset, cfg.width, cfg.embedding_size, cfg.image_size],
    }
    result = run_training(
        cfg, build_stage=build, data=TrainData(paths, targets, batches=batches), schedule=schedule,
        validate=validate, metric="val_score", fingerprint=fingerprint, on_step=on_step, reporter=reporter,
    )
    _write_names(result.work_dir / "identities.txt", identities)
    return result
__all__ = ["train_verification", "train_expression", "train_multitask", "train_joint", "TrainResult"]
