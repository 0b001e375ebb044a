"""A 2-D t-SNE map of a dataset's embeddings, coloured by identity.

Identities are the class folders (``att_faces/s1``), or, with a subject regex, the
subject in each file name (CK+: expression folders, subject ``S010`` in the name). The
report also gives the leave-one-out nearest-neighbour identity accuracy in the
embedding space, a number to go with the picture.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from facelivenet.data.datasets import scan_class_folders, with_subjects
from facelivenet.errors import DatasetError
from facelivenet.eval.crops import Progress, analyze_files
from facelivenet.eval.plots import plot_identity_map

#: Most images embedded and mapped by default (t-SNE is quadratic in them).
MAX_IMAGES = 2000


def nearest_neighbour_accuracy(embeddings: np.ndarray, groups: np.ndarray) -> float | None:
    """Share of images whose nearest other image (squared L2) has the same identity.

    Args:
        embeddings: (N, D); groups: (N,) identity labels. None when N < 2.
    """
    e = np.asarray(embeddings, np.float64)
    if len(e) < 2:
        return None
    sq = np.sum(e * e, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * e @ e.T
    np.fill_diagonal(d, np.inf)
    g = np.asarray(groups)
    return float(np.mean(g[np.argmin(d, axis=1)] == g))


def tsne_points(embeddings: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE (scikit-learn, PCA start) of (N, D) embeddings; perplexity is capped at (N - 1) / 3."""
    from sklearn.manifold import TSNE

    n = len(embeddings)
    if n < 4:
        raise DatasetError(f"t-SNE needs at least 4 images; got {n}")
    perplexity = float(min(perplexity, (n - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(embeddings, np.float64))


def plot_embeddings(model: Any, data_dir: str | os.PathLike, out: str | os.PathLike, *,
                    subject_regex: str | None = None, max_images: int = MAX_IMAGES, perplexity: float = 30.0,
                    seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Embed (a seeded sample of at most ``max_images`` of) ``data_dir``, map it with
    t-SNE and write the scatter plot to ``out`` (PNG). Returns the report dictionary."""
    data = scan_class_folders(data_dir)
    if subject_regex:
        data = with_subjects(data, subject_regex, required=True)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(data), size=min(len(data), max_images), replace=False))
    data = data.subset(keep)
    out_emb = analyze_files(model, list(data.paths), progress=progress)
    labels, names = data.group_labels()
    points = tsne_points(out_emb.embeddings, perplexity=perplexity, seed=seed)
    plot_identity_map(out, points, labels, names, title=f"t-SNE of embeddings: {os.path.basename(os.fspath(data_dir))} "
                                                f"({len(names)} identities)")
    return {
        "out": os.fspath(out),
        "images": len(data),
        "identities": len(names),
        "nearest_neighbour_accuracy": nearest_neighbour_accuracy(out_emb.embeddings, labels),
        "model": str(model.source) if getattr(model, "source", None) else None,
    }

