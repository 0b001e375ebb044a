"""Labelled image datasets on disk, and splits that never put one person on both sides.

Layouts read here:

- one folder per class: ``ROOT/<class>/<image>`` (identities such as ``att_faces/s1``,
  or expressions such as ``fer2013/train/happy``). Classes are the sorted folder names.
- CK+-style file names that carry a subject: ``S010_004_00000017.png`` (subject
  ``S010``, sequence ``004``, frame 17). The subject is read with a configurable
  regular expression (:data:`CKPLUS_SUBJECT_REGEX`; its ``subject`` group, else its
  first matched group, else the whole match).

Every image belongs to a *group*: the identity (class folder) for identity datasets, the
subject for expression datasets. :func:`split_by_group` splits groups, not images: the
three nearly identical frames of a CK+ sequence never land on both sides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facelivenet.errors import DatasetError
from facelivenet.faces import IMAGE_EXTENSIONS  # the one list of image file extensions

#: Subject in CK+ names: ``S<subject>_<sequence>_<frame>``.
CKPLUS_SUBJECT_REGEX = r"^(?P<subject>S\d+)_\d+_\d+"


@dataclass(frozen=True)
class LabeledImages:
    """Image files with a class label and a group (identity or subject) each.

    Attributes:
        paths: image file paths, sorted by class then file name.
        labels: (N,) int32 index into ``class_names``.
        class_names: the class names (sorted folder names), in label order.
        groups: (N,) the identity or subject of each image: what splits go by.
    """

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "LabeledImages":
        """The images at ``indices`` (same class names)."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabeledImages(
            tuple(self.paths[i] for i in idx), self.labels[idx].astype(np.int32),
            self.class_names, tuple(self.groups[i] for i in idx),
        )

    def group_names(self) -> tuple[str, ...]:
        """Distinct groups, sorted."""
        return tuple(sorted(set(self.groups)))

    def group_labels(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """(N,) int32 index of each image's group into the sorted group names, and the names."""
        names = self.group_names()
        index = {g: i for i, g in enumerate(names)}
        return np.array([index[g] for g in self.groups], np.int32), names

    def class_counts(self) -> np.ndarray:
        """(C,) images per class."""
        return np.bincount(self.labels, minlength=len(self.class_names))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_class_folders(root: str | os.PathLike, *, min_images_per_class: int = 1) -> LabeledImages:
    """Read a one-folder-per-class dataset; each class folder is also the image's group.

    Classes with fewer than ``min_images_per_class`` images are left out. Files that
    are not images (by extension) and hidden files are ignored.

    Raises:
        DatasetError: the folder is missing, has no class folders with images, or
            fewer than two classes remain.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    paths: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in os.listdir(class_dir) if _is_image(f) and (class_dir / f).is_file())
        if len(files) < max(min_images_per_class, 1):
            continue
        label = len(names)
        names.append(class_dir.name)
        paths.extend(str(class_dir / f) for f in files)
        labels.extend([label] * len(files))
    if not names:
        raise DatasetError(f"{root}: no class folders with images (expected ROOT/<class>/<image>)")
    if len(names) < 2:
        raise DatasetError(f"{root}: only one class ({names[0]!r}); at least two are needed")
    labels_arr = np.array(labels, np.int32)
    return LabeledImages(tuple(paths), labels_arr, tuple(names), tuple(names[l] for l in labels_arr))


def subject_of(name: str, regex: re.Pattern[str]) -> str | None:
    """The subject read from a file name by ``regex``, or None when it does not match."""
    m = regex.search(Path(name).name)
    if not m:
        return None
    if m.groupdict().get("subject") is not None:
        return m.group("subject")
    found = [g for g in m.groups() if g is not None]
    return found[0] if found else m.group(0)


def compile_subject_regex(pattern: str) -> re.Pattern[str]:
    """Compile a subject pattern, turning a syntax error into :class:`DatasetError`."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"invalid subject regex {pattern!r}: {exc}") from None


def with_subjects(dataset: LabeledImages, pattern: str = CKPLUS_SUBJECT_REGEX, *, required: bool = False) -> LabeledImages:
    """Regroup ``dataset`` by the subject in each file name.

    When no file name matches and ``required`` is false, each image becomes its own
    group (a dataset without subject information, such as FER2013, where every image
    is taken to be a different person). A partial match is always an error: a file
    that escapes the pattern could put one person on both sides of a split.

    Raises:
        DatasetError: some names match and some do not, or none match and ``required``.
    """
    regex = compile_subject_regex(pattern)
    subjects = [subject_of(p, regex) for p in dataset.paths]
    missing = [p for p, s in zip(dataset.paths, subjects) if s is None]
    if not missing:
        return LabeledImages(dataset.paths, dataset.labels, dataset.class_names, tuple(subjects))
    if len(missing) == len(subjects) and not required:
        return LabeledImages(dataset.paths, dataset.labels, dataset.class_names, tuple(dataset.paths))
    raise DatasetError(
        f"{missing[0]}: file name has no subject matching {pattern!r} "
        f"({len(missing)} of {len(subjects)} files do not match)"
    )


def split_by_group(dataset: LabeledImages, val_fraction: float, seed: int = 0) -> tuple[LabeledImages, LabeledImages]:
    """Seeded split of ``dataset`` into (train, validation) by group, never by image.

    ``round(val_fraction * groups)`` groups (at least one when ``val_fraction > 0``)
    go to validation; ``val_fraction == 0`` returns an empty validation set.

    Raises:
        DatasetError: ``val_fraction`` outside [0, 1), or too few groups to split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in [0, 1). Received: {val_fraction}")
    if val_fraction == 0.0:
        return dataset, dataset.subset([])
    groups = dataset.group_names()
    if len(groups) < 2:
        raise DatasetError(f"cannot split {len(groups)} group(s) into training and validation")
    n_val = min(max(1, int(round(val_fraction * len(groups)))), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:n_val]}
    is_val = np.array([g in val_groups for g in dataset.groups], bool)
    return dataset.subset(np.flatnonzero(~is_val)), dataset.subset(np.flatnonzero(is_val))


def align_classes(dataset: LabeledImages, class_names: Sequence[str], source: str) -> LabeledImages:
    """Relabel ``dataset`` (e.g. a separate validation folder) to ``class_names``' order.

    Raises:
        DatasetError: ``dataset`` has a class that ``class_names`` lacks.
    """
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(dataset.class_names) - set(index))
    if unknown:
        raise DatasetError(f"{source}: classes {unknown} are not among the training classes {list(class_names)}")
    labels = np.array([index[dataset.class_names[l]] for l in dataset.labels], np.int32)
    return LabeledImages(dataset.paths, labels, tuple(class_names), dataset.groups)
