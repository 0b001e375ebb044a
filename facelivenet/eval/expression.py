"""Expression recognition: accuracy and confusion of a model on a labelled folder, and
the papers' subject-independent K-fold cross-validation (DESIGN.md §7).

A dataset is one folder per expression (``DATA/<expression>/<image>``) of face crops.
Folder names are matched to the model's class names case-insensitively, also across
the usual synonyms (:data:`SYNONYMS`: CK+'s ``anger``/``sadness`` are FER2013's
``angry``/``sad``); a folder matching no class is an error unless ``skip_unknown``
(then its images are left out and the folder is reported).

Cross-validation (:func:`cross_validate_expression`) splits the *subjects* (read from
file names, CK+ style) into K folds, trains stage 2 on K-1 of them with
:func:`facelivenet.train.run.train_expression` and tests on the held-out fold; it
reports the mean ± std of the fold accuracies and the summed confusion matrix.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from facelivenet.data.datasets import LabeledImages, scan_class_folders, with_subjects
from facelivenet.errors import DatasetError
from facelivenet.eval import metrics
from facelivenet.eval.crops import Progress, analyze_files

#: Names of one expression across datasets (lower case): FER2013, CK+, Oulu-CASIA.
SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"angry", "anger"}),
    frozenset({"sad", "sadness"}),
    frozenset({"happy", "happiness"}),
    frozenset({"surprise", "surprised"}),
    frozenset({"fear", "fearful"}),
    frozenset({"disgust", "disgusted"}),
)


def same_expression(a: str, b: str) -> bool:
    """Whether two expression names mean the same class (case-insensitive, :data:`SYNONYMS`)."""
    a, b = a.lower(), b.lower()
    return a == b or any(a in group and b in group for group in SYNONYMS)


def class_index(name: str, classes: Sequence[str]) -> int | None:
    """Index of the class of ``classes`` that ``name`` means (case, synonyms), or None."""
    exact = [i for i, c in enumerate(classes) if c.lower() == name.lower()]
    if exact:
        return exact[0]
    near = [i for i, c in enumerate(classes) if same_expression(name, c)]
    return near[0] if near else None


@dataclass(frozen=True)
class ClassMapping:
    """Dataset folders → model classes.

    Attributes:
        index: folder name → index into the model's classes.
        unknown: folders that match no class (left out).
    """

    index: Mapping[str, int]
    unknown: tuple[str, ...]


def match_classes(folders: Sequence[str], classes: Sequence[str], *, skip_unknown: bool = False,
                  source: str = "dataset") -> ClassMapping:
    """Match dataset folder names to model class names.

    Raises:
        DatasetError: a folder matches no class (and not ``skip_unknown``), or none does.
    """
    index = {f: class_index(f, classes) for f in folders}
    unknown = tuple(f for f, i in index.items() if i is None)
    if unknown and not skip_unknown:
        raise DatasetError(
            f"{source}: folder(s) {list(unknown)} match no expression class of the model "
            f"({', '.join(classes)}); rename them, or --skip-unknown leaves them out"
        )
    known = {f: i for f, i in index.items() if i is not None}
    if not known:
        raise DatasetError(f"{source}: no folder matches an expression class of the model ({', '.join(classes)})")
    return ClassMapping(known, unknown)


@dataclass
class ExpressionReport:
    """Accuracy and confusion of expression predictions.

    Attributes:
        classes: (C,) class names (rows and columns of ``confusion``).
        confusion: (C, C) counts, row = ground truth, column = prediction.
        extra: more report keys (images, folders left out, model, folds...).
    """

    classes: tuple[str, ...]
    confusion: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        precision, recall = metrics.precision_recall(self.confusion)
        support = self.confusion.sum(axis=1)
        return {
            "accuracy": self.accuracy,
            "classes": list(self.classes),
            "confusion": self.confusion.tolist(),
            "confusion_normalized": np.round(metrics.normalize_rows(self.confusion), 6).tolist(),
            "precision": {c: _num(v) for c, v in zip(self.classes, precision)},
            "recall": {c: _num(v) for c, v in zip(self.classes, recall)},
            "support": {c: int(n) for c, n in zip(self.classes, support)},
            **self.extra,
        }


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def predict_expressions(model: Any, paths: Sequence[str], progress: Progress | None = None) -> np.ndarray:
    """(N,) index into the model's classes of the most probable expression of each face crop."""
    return np.argmax(analyze_files(model, paths, progress=progress).expressions, axis=1)


def evaluate_expression(model: Any, data_dir: str | os.PathLike, *, skip_unknown: bool = False,
                        only: Sequence[str] | None = None, progress: Progress | None = None) -> ExpressionReport:
    """Accuracy, per-class precision / recall and confusion of ``model`` on ``data_dir``.

    Rows and columns are the model's classes (a class without images has an empty row).
    With ``only`` (e.g. neutral, happy, surprise: the classes a challenge uses), the
    task becomes that sub-problem, as in the papers' 3-class figures: images of other
    classes are left out and the prediction is the most probable of ``only``.
    """
    data = scan_class_folders(data_dir)
    classes = tuple(model.config.expression_classes)
    mapping = match_classes(data.class_names, classes, skip_unknown=skip_unknown, source=str(data_dir))
    chosen = list(range(len(classes)))
    if only:
        chosen = []
        for name in only:
            i = class_index(name, classes)
            if i is None:
                raise DatasetError(f"{name!r} is not an expression class of the model ({', '.join(classes)})")
            chosen.append(i)
    position = {c: k for k, c in enumerate(chosen)}
    folder = np.array(data.class_names)[data.labels]
    keep = np.flatnonzero([f in mapping.index and mapping.index[f] in position for f in folder])
    if keep.size == 0:
        raise DatasetError(f"{data_dir}: no images of the classes {[classes[i] for i in chosen]}")
    labels = np.array([position[mapping.index[f]] for f in folder[keep]], np.int64)
    t0 = time.perf_counter()
    probs = analyze_files(model, [data.paths[i] for i in keep], progress=progress).expressions
    predicted = np.argmax(probs[:, chosen], axis=1)
    names = tuple(classes[i] for i in chosen)
    confusion = metrics.confusion_matrix(labels, predicted, len(names))
    return ExpressionReport(names, confusion, {
        "images": int(keep.size),
        "folders": {f: classes[i] for f, i in mapping.index.items() if i in position},
        "skipped_folders": list(mapping.unknown) + [f for f, i in mapping.index.items() if i not in position],
        "skipped_images": int(len(data) - keep.size),
        "model": str(model.source) if getattr(model, "source", None) else None,
        "seconds": time.perf_counter() - t0,
    })


# --- subject-independent cross-validation -------------------------------------------------

def subject_folds(groups: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """(N,) fold number in [0, k) of each image: subjects shuffled (seeded) and dealt
    round-robin, so that no subject is in two folds and folds differ by at most one subject.

    Raises:
        DatasetError: fewer subjects than folds, or k < 2.
    """
    subjects = sorted(set(groups))
    if k < 2:
        raise DatasetError(f"cross-validation needs at least 2 folds. Received: {k}")
    if len(subjects) < k:
        raise DatasetError(f"cannot split {len(subjects)} subject(s) into {k} folds")
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold_of = {subjects[j]: pos % k for pos, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups], np.int64)


def link_subset(data: LabeledImages, indices: np.ndarray, root: Path) -> Path:
    """``root/<class>/<file>`` symbolic links to ``data``'s images at ``indices`` (names kept,
    so the subject regex still reads them)."""
    for i in indices:
        src = Path(data.paths[i]).resolve()
        dest = root / data.class_names[data.labels[i]] / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dest)
    return root


@dataclass(frozen=True)
class FoldResult:
    """One fold: its subjects and images, the accuracy on them, the trained model."""

    fold: int
    test_subjects: int
    test_images: int
    accuracy: float
    model: str | None


def cross_validate_expression(
    data_dir: str | os.PathLike,
    *,
    k: int = 10,
    subject_regex: str,
    train_options: Mapping[str, Any],
    work_dir: str | os.PathLike | None = None,
    seed: int = 0,
    train: Callable[..., Any] | None = None,
    load: Callable[[str], Any] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> ExpressionReport:
    """Subject-independent K-fold cross-validation of stage-2 training.

    For each fold: links to the other folds' images go to ``WORK/fold<k>/data``,
    :func:`~facelivenet.train.run.train_expression` trains on them (no validation
    split: ``val_fraction`` 0) into ``WORK/fold<k>.keras``, and the final model is
    tested on the held-out fold's images.

    Args:
        data_dir: expression folders of face crops, subjects in the file names.
        subject_regex: the subject in a file name (required to match every file).
        train_options: :class:`~facelivenet.train.options.ExpressionConfig` fields other
            than ``data``, ``out``, ``work_dir``, ``val_fraction``, ``subject_regex``
            (``model`` or ``from_scratch``, ``epochs``, ``batch_size``, ...).
        work_dir: keeps the fold models and logs; default a temporary folder, removed.
        seed: seeds the fold assignment (and training, unless ``train_options`` has one).
        train, load: the training function and model loader (tests inject fakes).
        on_fold: called after each fold (progress).

    Returns:
        A report over the dataset's classes with the summed confusion of the folds;
        its ``accuracy`` key is the mean of the fold accuracies, with ``accuracy_std``,
        ``accuracy_pooled`` (of the summed confusion), ``fold_accuracies`` and ``folds``.
    """
    fixed = dict(val_fraction=0.0, subject_regex=subject_regex)
    if train is None:
        from facelivenet.train.options import ExpressionConfig
        from facelivenet.train.run import train_expression

        # Settings fail here, before any fold is linked or trained.
        ExpressionConfig(**{"seed": seed, **train_options}, data=str(data_dir), out="fold.keras", **fixed)

        def train(**options):
            return train_expression(ExpressionConfig(**options))
    if load is None:
        from facelivenet.api import load_model as load

    data = with_subjects(scan_class_folders(data_dir), subject_regex, required=True)
    folds = subject_folds(data.groups, k, seed)
    classes = data.class_names
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    results: list[FoldResult] = []
    t0 = time.perf_counter()
    with ExitStack() as stack:
        work = Path(work_dir) if work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flnet-cv-")))
        for fold in range(k):
            test = np.flatnonzero(folds == fold)
            fold_data = work / f"fold{fold}" / "data"
            if fold_data.exists():
                raise DatasetError(f"{fold_data}: exists; give an empty --work-dir")
            link_subset(data, np.flatnonzero(folds != fold), fold_data)
            options = {"seed": seed, **train_options}
            result = train(
                **options, data=str(fold_data), out=str(work / f"fold{fold}.keras"),
                work_dir=str(work / f"fold{fold}.train"), **fixed,
            )
            model = load(str(result.model))
            predicted = predict_expressions(model, [data.paths[i] for i in test])
            # The fold model's classes are the training folders' names (a class without
            # training images is missing): map its predictions back by name.
            to_data = np.array([classes.index(c) for c in model.config.expression_classes], np.int64)
            fold_confusion = metrics.confusion_matrix(data.labels[test], to_data[predicted], len(classes))
            confusion += fold_confusion
            res = FoldResult(fold, len({data.groups[i] for i in test}), int(test.size),
                             float(np.trace(fold_confusion) / max(test.size, 1)),
                             str(result.model) if work_dir else None)
            results.append(res)
            if on_fold is not None:
                on_fold(res)
    accs = np.array([r.accuracy for r in results])
    return ExpressionReport(classes, confusion, {
        "accuracy": float(accs.mean()),
        "accuracy_std": float(accs.std()),
        "accuracy_pooled": float(np.trace(confusion) / confusion.sum()),
        "fold_accuracies": accs.tolist(),
        "folds": [dataclasses.asdict(r) for r in results],
        "k": k,
        "subjects": len(set(data.groups)),
        "images": len(data),
        "seconds": time.perf_counter() - t0,
    })


def format_report(d: Mapping[str, Any]) -> str:
    """Human summary of an expression report dictionary (single run or cross-validation)."""
    lines = []
    if "fold_accuracies" in d:
        lines.append(f"cross-validation: {d['k']} folds over {d['subjects']} subjects, {d['images']} images")
        lines.append(f"accuracy:   {d['accuracy']:.4f} ± {d['accuracy_std']:.4f} "
                     f"(folds: {', '.join(f'{a:.3f}' for a in d['fold_accuracies'])})")
        lines.append(f"pooled:     {d['accuracy_pooled']:.4f}")
    else:
        lines.append(f"images:     {d['images']}")
        lines.append(f"accuracy:   {d['accuracy']:.4f}")
        if d.get("skipped_folders"):
            lines.append(f"left out:   {', '.join(d['skipped_folders'])} ({d['skipped_images']} images)")
    lines.append(f"{'class':<12} {'precision':>9} {'recall':>7} {'support':>8}")
    for c in d["classes"]:
        p, r = d["precision"][c], d["recall"][c]
        lines.append(f"{c:<12} {'-' if p is None else f'{p:.3f}':>9} {'-' if r is None else f'{r:.3f}':>7} "
                     f"{d['support'][c]:>8}")
    return "\n".join(lines)
