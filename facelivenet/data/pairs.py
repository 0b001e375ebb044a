"""Verification pairs: LFW-style pairs files, and pairs sampled from labelled images.

LFW format (``pairs.txt``): a header ``<folds> <pairs_per_fold>`` (``10 300``), then
per fold ``pairs_per_fold`` same-person lines ``name i j`` followed by as many
different-person lines ``name1 i name2 j``. Image ``i`` of ``name`` is
``IMAGES/name/name_{i:04d}.<ext>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facelivenet.errors import DatasetError, FileFormatError
from facelivenet.faces import IMAGE_EXTENSIONS
from facelivenet.utils import parse_number, read_text_file

#: Image extensions tried, in order, for a pair's image file.
PAIR_IMAGE_EXTENSIONS = IMAGE_EXTENSIONS  # the one list, .jpg first


@dataclass(frozen=True)
class Pair:
    """Two images, each named by person and 1-based image number."""

    name1: str
    index1: int
    name2: str
    index2: int

    @property
    def issame(self) -> bool:
        return self.name1 == self.name2


@dataclass(frozen=True)
class PairsFile:
    """A parsed pairs file.

    Attributes:
        folds: number of folds the header announces.
        pairs_per_fold: same (and different) pairs per fold the header announces.
        pairs: the pairs in file order (fold after fold).
    """

    folds: int
    pairs_per_fold: int
    pairs: tuple[Pair, ...]

    @property
    def issame(self) -> np.ndarray:
        """(P,) bool: which pairs show the same person."""
        return np.array([p.issame for p in self.pairs], bool)


def _index(text: str, where: str) -> int:
    value = parse_number(text, int, "image number", where, FileFormatError)
    if value < 1:
        raise FileFormatError(f"{where}: image numbers start at 1, got {value}")
    return value


def parse_pairs(text: str, source: str = "<pairs>") -> PairsFile:
    """Parse pairs-file text; malformed lines raise :class:`FileFormatError` with the line number."""
    lines = [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not lines:
        raise FileFormatError(f"{source}: empty pairs file")
    n, header = lines[0]
    parts = header.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise FileFormatError(f"{source}:{n}: expected a header '<folds> <pairs_per_fold>', got {header!r}")
    folds, per_fold = int(parts[0]), int(parts[1])
    if folds < 1 or per_fold < 1:
        raise FileFormatError(f"{source}:{n}: folds and pairs per fold must be >= 1, got {header!r}")
    pairs: list[Pair] = []
    for n, line in lines[1:]:
        where = f"{source}:{n}"
        f = line.split()
        if len(f) == 3:
            pairs.append(Pair(f[0], _index(f[1], where), f[0], _index(f[2], where)))
        elif len(f) == 4:
            pairs.append(Pair(f[0], _index(f[1], where), f[2], _index(f[3], where)))
        else:
            raise FileFormatError(
                f"{where}: expected 'name i j' or 'name1 i name2 j', got {len(f)} fields: {line!r}"
            )
    expected = folds * per_fold * 2
    if len(pairs) != expected:
        raise FileFormatError(
            f"{source}: header announces {folds} folds x {per_fold} x 2 = {expected} pairs, file has {len(pairs)}"
        )
    return PairsFile(folds, per_fold, tuple(pairs))


def read_pairs(path: str | os.PathLike) -> PairsFile:
    """Read and parse a pairs file."""
    return parse_pairs(read_text_file(path, "pairs file", FileFormatError), str(path))


def image_path(images_dir: str | os.PathLike, name: str, index: int) -> Path | None:
    """``IMAGES/name/name_{index:04d}.<ext>`` for the first extension that exists, else None."""
    base = Path(images_dir) / name / f"{name}_{index:04d}"
    for ext in PAIR_IMAGE_EXTENSIONS:
        candidate = base.with_name(base.name + ext)
        if candidate.is_file():
            return candidate
    return None


def resolve_pair_images(pairs: PairsFile, images_dir: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct image paths of ``pairs`` and, per pair, the indices of its two images.

    Returns ``(paths, first (P,), second (P,))`` so that pair k compares
    ``paths[first[k]]`` with ``paths[second[k]]``.

    Raises:
        DatasetError: naming the first missing image and how many are missing.
    """
    index: dict[tuple[str, int], int] = {}
    paths: list[str] = []
    missing: list[str] = []
    ends = np.zeros((len(pairs.pairs), 2), np.int64)
    for k, pair in enumerate(pairs.pairs):
        for side, key in enumerate(((pair.name1, pair.index1), (pair.name2, pair.index2))):
            if key not in index:
                found = image_path(images_dir, *key)
                if found is None:
                    missing.append(f"{key[0]}/{key[0]}_{key[1]:04d}")
                    index[key] = -1
                else:
                    index[key] = len(paths)
                    paths.append(str(found))
            ends[k, side] = index[key]
    if missing:
        raise DatasetError(
            f"{images_dir}: {len(missing)} pair image(s) missing, first {missing[0]}.* "
            f"(expected IMAGES/name/name_NNNN.jpg)"
        )
    return paths, ends[:, 0], ends[:, 1]


def sample_pairs(groups: Sequence[int] | np.ndarray, max_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced same/different pairs from labelled items, seeded and shuffled.

    Args:
        groups: (N,) identity of each item.
        max_pairs: upper bound on the number of pairs returned (half same, half different).

    Returns:
        ``(first (P,), second (P,), issame (P,) bool)``, item indices into ``groups``.
        Same pairs are limited by what the data holds; different pairs match their count.
    """
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    same: list[tuple[int, int]] = []
    for value in np.unique(g):
        members = np.flatnonzero(g == value)
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                same.append((members[a], members[b]))
    n_diff_possible = len(g) * (len(g) - 1) // 2 - len(same)
    half = min(len(same), n_diff_possible, max_pairs // 2)
    if half == 0 or len(np.unique(g)) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    chosen = [same[i] for i in rng.choice(len(same), size=half, replace=False)]
    diff: set[tuple[int, int]] = set()
    while len(diff) < half:
        a, b = rng.integers(0, len(g), size=2)
        if g[a] != g[b]:
            diff.add((min(a, b), max(a, b)))
    pairs = np.array(chosen + sorted(diff), np.int64)
    issame = np.array([True] * half + [False] * half)
    order = rng.permutation(len(pairs))
    return pairs[order, 0], pairs[order, 1], issame[order]
