"""The LFW verification protocol on a pairs file (DESIGN.md §7).

:func:`evaluate_verification` embeds every distinct image of the pairs once (batched;
``--detect`` finds and aligns the face first, ``--flip`` adds the mirrored face's
embedding), measures the squared L2 distance of each pair and reports:

- ``accuracy`` ± ``accuracy_std``: K-fold accuracy, the threshold of each fold chosen
  on the other K-1 folds (K = the file's folds);
- ``val`` at ``far``: VAL@FAR=1e-3, the threshold for the target FAR interpolated on
  the other folds (facenet's ``calculate_val``), ``far`` the FAR actually reached;
- ``auc``, ``eer``: of the ROC over all pairs;
- ``threshold``: the best threshold over all pairs (what a deployment would use).

Images missing from the folder stop the run (:class:`DatasetError` naming them) unless
``skip_missing``: then pairs with a missing image are left out and the others keep
their fold.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facelivenet.data.pairs import PairsFile, image_path, resolve_pair_images
from facelivenet.errors import DatasetError
from facelivenet.eval import metrics
from facelivenet.eval.crops import DetectedFace, Progress, WholeImage, analyze_files

#: VAL is reported at this false accept rate (the LFW convention).
FAR_TARGET = 1e-3
#: Missing images named in the error message (the report lists all).
MISSING_SHOWN = 10


@dataclass(frozen=True)
class PairImages:
    """The images of a pairs file found on disk.

    Attributes:
        paths: distinct image files.
        first, second: (P,) indices into ``paths`` of each kept pair's images.
        issame: (P,) bool.
        folds: (P,) fold number of each kept pair.
        missing: ``name/name_NNNN`` of each image not found (sorted).
        skipped_pairs: pairs left out because an image is missing.
    """

    paths: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    issame: np.ndarray
    folds: np.ndarray
    missing: tuple[str, ...]
    skipped_pairs: int


def locate_pair_images(pairs: PairsFile, images_dir: str | os.PathLike, *, n_folds: int | None = None,
                       skip_missing: bool = False) -> PairImages:
    """Find the pairs' images under ``images_dir`` (``NAME/NAME_NNNN.jpg``).

    Pair i of P belongs to fold ``i * K // P`` (K = ``n_folds``, default the file's
    folds): contiguous blocks of the file, as LFW's ``pairs.txt`` is written.

    Raises:
        DatasetError: images are missing and not ``skip_missing`` (the message names
            them), or no pair is left.
    """
    present: dict[tuple[str, int], bool] = {}
    for p in pairs.pairs:
        for key in ((p.name1, p.index1), (p.name2, p.index2)):
            if key not in present:
                present[key] = image_path(images_dir, *key) is not None
    missing = tuple(sorted(f"{n}/{n}_{i:04d}" for (n, i), ok in present.items() if not ok))
    if missing and not skip_missing:
        shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
        raise DatasetError(
            f"{images_dir}: {len(missing)} image(s) named in the pairs file are missing: {shown} "
            "(--skip-missing evaluates the other pairs)"
        )
    k = n_folds or pairs.folds
    if k < 2:
        raise DatasetError(f"the protocol needs at least 2 folds; got {k}")
    keep = [i for i, p in enumerate(pairs.pairs)
            if present[(p.name1, p.index1)] and present[(p.name2, p.index2)]]
    if not keep:
        raise DatasetError(f"{images_dir}: none of the {len(pairs.pairs)} pairs has both images")
    kept = PairsFile(pairs.folds, pairs.pairs_per_fold, tuple(pairs.pairs[i] for i in keep))
    if kept.issame.all() or not kept.issame.any():
        raise DatasetError(f"the protocol needs same and different pairs; the {len(keep)} pair(s) evaluated "
                           f"are all {'same' if kept.issame.all() else 'different'}")
    paths, first, second = resolve_pair_images(kept, images_dir)
    folds = np.asarray(keep, np.int64) * k // len(pairs.pairs)
    return PairImages(tuple(paths), first, second, kept.issame, folds, missing, len(pairs.pairs) - len(keep))


@dataclass
class VerificationReport:
    """What :func:`evaluate_verification` measured (see the module doc); ``to_dict`` is
    the ``--json`` document."""

    accuracy: metrics.KFoldAccuracy
    val: metrics.ValAtFar
    roc: metrics.RocCurve
    auc: float
    eer: metrics.EqualErrorRate
    threshold: float
    threshold_accuracy: float
    images: PairImages
    no_face: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    model_threshold: dict[str, Any] | None = None

    @property
    def far_measurable(self) -> bool:
        """Whether the VAL's FAR target is at least one false accept among the different pairs."""
        negatives = int((~self.images.issame).sum())
        return negatives > 0 and self.val.far_target * negatives >= 1.0

    @property
    def pairs(self) -> int:
        return int(self.images.issame.size)

    def to_dict(self) -> dict[str, Any]:
        acc, val = self.accuracy, self.val
        return {
            "accuracy": acc.accuracy,
            "accuracy_std": acc.std,
            "val": val.val,
            "val_std": val.val_std,
            "far": val.far,
            "far_target": val.far_target,
            "far_measurable": self.far_measurable,
            "model_threshold": self.model_threshold,
            "auc": self.auc,
            "eer": self.eer.eer,
            "eer_threshold": self.eer.threshold,
            "threshold": self.threshold,
            "threshold_accuracy": self.threshold_accuracy,
            "distance": "squared L2 between unit embeddings (same when <= threshold)",
            "pairs": self.pairs,
            "same_pairs": int(self.images.issame.sum()),
            "folds": int(len(acc.fold_accuracies)),
            "fold_accuracies": acc.fold_accuracies.tolist(),
            "fold_thresholds": acc.thresholds.tolist(),
            "images": len(self.images.paths),
            "missing": list(self.images.missing),
            "skipped_pairs": self.images.skipped_pairs,
            "no_face": list(self.no_face),
            **self.settings,
            "seconds": self.seconds,
            "pairs_per_second": self.pairs / self.seconds if self.seconds > 0 else None,
        }


def limit_pairs(pairs: PairsFile, max_pairs: int | None) -> PairsFile:
    """At most ``max_pairs`` pairs, spread evenly over the file (so every fold and both
    kinds of pair keep their share: LFW's file is written in blocks of each)."""
    n = len(pairs.pairs)
    if not max_pairs or max_pairs >= n:
        return pairs
    keep = np.unique(np.linspace(0, n - 1, int(max_pairs)).round().astype(int))
    return PairsFile(pairs.folds, max(1, len(keep) // max(1, 2 * pairs.folds)),
                     tuple(pairs.pairs[i] for i in keep))


def operating_point(distances: np.ndarray, issame: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, TAR and FAR at a fixed ``threshold`` (a model's own): same when <= it."""
    d, s = np.asarray(distances, float), np.asarray(issame, bool)
    accept = d <= threshold
    return {
        "threshold": float(threshold),
        "accuracy": float(np.mean(accept == s)),
        "tar": float(accept[s].mean()) if s.any() else None,
        "far": float(accept[~s].mean()) if (~s).any() else None,
    }


def verification_metrics(distances: np.ndarray, issame: np.ndarray, folds: np.ndarray,
                         far_target: float = FAR_TARGET) -> dict[str, Any]:
    """The protocol's numbers for (P,) distances, (P,) issame and (P,) fold numbers."""
    roc = metrics.roc_curve(distances, issame)
    threshold, threshold_accuracy = metrics.best_threshold(distances, issame)
    return dict(
        accuracy=metrics.kfold_accuracy(distances, issame, folds=folds),
        val=metrics.kfold_val_at_far(distances, issame, far_target, folds=folds),
        roc=roc, auc=metrics.auc(roc), eer=metrics.equal_error_rate(roc),
        threshold=threshold, threshold_accuracy=threshold_accuracy,
    )


def evaluate_verification(model: Any, pairs: PairsFile, images_dir: str | os.PathLike, *,
                          detect: bool = False, flip: bool = False, skip_missing: bool = False,
                          n_folds: int | None = None, far_target: float = FAR_TARGET,
                          max_pairs: int | None = None, detector: Any = None,
                          progress: Progress | None = None) -> VerificationReport:
    """Run the LFW protocol for ``model`` (a :class:`~facelivenet.api.FaceModel`).

    Args:
        pairs: the parsed pairs file.
        images_dir: folder of ``NAME/NAME_NNNN.jpg`` images.
        detect: detect and align the face in each image (raw photos such as LFW
            deep-funneled); otherwise images are face crops used whole.
        flip: fuse each face's embedding with its mirror image's.
        skip_missing: leave out pairs whose images are missing instead of failing.
        n_folds: folds of the protocol (default: the file's).
        far_target: FAR of the reported VAL (``far_measurable`` in the report says
            whether the pairs have enough different pairs to measure it).
        max_pairs: evaluate at most this many pairs, spread evenly over the file.
        detector: face detector for ``detect`` (default: a new :class:`FaceDetector`).
        progress: progress wrapper over the image chunks.
    """
    t0 = time.perf_counter()
    found = locate_pair_images(limit_pairs(pairs, max_pairs), images_dir, n_folds=n_folds,
                               skip_missing=skip_missing)
    crops = DetectedFace(model.config, detector) if detect else WholeImage()
    out = analyze_files(model, found.paths, crops=crops, flip=flip, progress=progress)
    d = metrics.squared_l2_distances(out.embeddings[found.first], out.embeddings[found.second])
    numbers = verification_metrics(d, found.issame, found.folds, far_target)
    settings = {
        "mode": "detect" if detect else "aligned",
        "flip": flip,
        "model": str(model.source) if getattr(model, "source", None) else None,
    }
    own = getattr(getattr(model, "config", None), "verification_threshold", None)
    return VerificationReport(**numbers, images=found, no_face=out.no_face, settings=settings,
                              seconds=time.perf_counter() - t0,
                              model_threshold=None if own is None else operating_point(d, found.issame, float(own)))


def format_report(d: dict[str, Any]) -> str:
    """The human summary of a verification report dictionary."""
    lines = [
        f"pairs:      {d['pairs']} ({d['same_pairs']} same), {d['folds']} folds, {d['images']} images "
        f"({d['mode']}{', flip' if d['flip'] else ''})",
        f"accuracy:   {d['accuracy']:.4f} ± {d['accuracy_std']:.4f}",
        f"VAL:        {d['val']:.4f} ± {d['val_std']:.4f} @ FAR {d['far']:.5f} (target {d['far_target']:g})"
        + ("" if d.get("far_measurable", True) else
           f"  WARNING: FAR {d['far_target']:g} is below 1 / {d['pairs'] - d['same_pairs']} different pairs: "
           "not measurable here"),
        f"AUC:        {d['auc']:.4f}",
        f"EER:        {d['eer']:.4f} (threshold {d['eer_threshold']:.4f})",
        f"threshold:  {d['threshold']:.4f} (accuracy {d['threshold_accuracy']:.4f} on all pairs)",
    ]
    own = d.get("model_threshold")
    if own:
        lines.append(f"model's:    threshold {own['threshold']:.4f}: accuracy {own['accuracy']:.4f}, "
                     f"TAR {own['tar']:.4f}, FAR {own['far']:.4f}")
    if d["missing"]:
        shown = ", ".join(d["missing"][:MISSING_SHOWN]) + (", ..." if len(d["missing"]) > MISSING_SHOWN else "")
        lines.append(f"missing:    {len(d['missing'])} image(s), {d['skipped_pairs']} pair(s) skipped: {shown}")
    if d["no_face"]:
        lines.append(f"no face:    {len(d['no_face'])} image(s), centre crop used")
    if d["pairs_per_second"]:
        lines.append(f"speed:      {d['pairs_per_second']:.1f} pairs/s ({d['seconds']:.1f} s)")
    return "\n".join(lines)
