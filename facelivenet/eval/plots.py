"""Evaluation plots written atomically as PNG (matplotlib's Agg backend, no display)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    from facelivenet.utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def plot_roc(path: str | os.PathLike, fpr: np.ndarray, tpr: np.ndarray, *, auc: float, eer: float,
             title: str = "ROC", label: str = "",
             operating_point: tuple[float, float, float] | None = None) -> None:
    """ROC curve (TPR against FAR, FAR on a log axis down to the first non-zero FAR)
    with the EER point, the chance diagonal and, if given, the operating point.

    Args:
        fpr, tpr: (T,) points of the curve, FAR increasing.
        operating_point: (FAR, TAR, threshold) of the model's own threshold.
    """
    plt = _pyplot()
    fig, (lin, log) = plt.subplots(1, 2, figsize=(10, 4.5))
    name = f"{label} " if label else ""
    for ax in (lin, log):
        ax.plot(fpr, tpr, lw=1.8, label=f"{name}AUC {auc:.4f}, EER {eer:.4f}")
        ax.plot([eer], [1.0 - eer], "o", color="C3", label="EER")
        if operating_point is not None:
            op_far, op_tar, op_t = operating_point
            ax.plot([max(op_far, 1e-6) if ax is log else op_far], [op_tar], "s", color="C2",
                    label=f"model threshold {op_t:.3f}: FAR {op_far:.3f}, TAR {op_tar:.3f}")
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.grid(alpha=0.3)
    lin.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    lin.set_xlim(0, 1)
    lin.set_ylim(0, 1.01)
    lin.legend(loc="lower right", fontsize=9)
    positive = np.asarray(fpr)[np.asarray(fpr) > 0]
    if positive.size:
        log.set_xscale("log")
        log.set_xlim(positive.min(), 1.0)
    log.set_ylim(0, 1.01)
    log.set_title("log FAR", fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(path: str | os.PathLike, normalized: np.ndarray, classes: Sequence[str], *,
                   title: str = "Confusion matrix") -> None:
    """Row-normalized confusion matrix (rows: ground truth, columns: prediction), each
    cell labelled with its share, darker = higher (the papers' Fig. 4 style).

    Args:
        normalized: (C, C) rows summing to 1 (or 0 for classes without samples).
    """
    plt = _pyplot()
    c = np.asarray(normalized, np.float64)
    n = len(classes)
    side = max(4.5, 0.75 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(c, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if c[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


#: Identities named in a map's legend at most.
LEGEND_MAX = 20


def plot_identity_map(path: str | os.PathLike, points: np.ndarray, labels: np.ndarray, names: Sequence[str], *,
                      title: str = "Embeddings") -> None:
    """Scatter of (N, 2) ``points`` coloured (and, past 20, also marked) by (N,) ``labels``
    indexing ``names``; a legend up to :data:`LEGEND_MAX` identities."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    colors = plt.get_cmap("tab20").colors
    markers = "os^DvP*Xh<>"
    for k, name in enumerate(names):
        member = np.asarray(labels) == k
        ax.scatter(points[member, 0], points[member, 1], s=14, color=colors[k % len(colors)],
                   marker=markers[(k // len(colors)) % len(markers)], label=name, alpha=0.8)
    if len(names) <= LEGEND_MAX:
        ax.legend(fontsize=7, markerscale=1.2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
