"""Drawing on frames (annotated clips, the realtime window) and the timeline plot."""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from facelivenet.auth.analyzer import FaceResult

GREEN = (40, 200, 60)
RED = (230, 50, 50)
GRAY = (160, 160, 160)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def text_box(text: str, org: tuple[int, int], scale: float, thickness: int = 1) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the dark plate :func:`_text` draws behind ``text`` at ``org``."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, int(round(3 * scale)))
    x, y = org
    return x - pad, y - th - pad, x + tw + pad, y + base + pad


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color, thickness: int = 1) -> None:
    """``text`` drawn once, on a dark translucent plate.

    A black outline drawn as a thicker pass of the same text (the usual trick) does not
    line up under OpenCV 5, whose font gets wider as it gets bolder: every label showed
    twice, offset. The plate keeps the text legible on any background and any OpenCV.
    """
    h, w = img.shape[:2]
    x1, y1, x2, y2 = text_box(text, org, scale, thickness)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = (img[y1:y2, x1:x2] * 0.35).astype(img.dtype)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def draw_overlay(rgb: np.ndarray, faces: Sequence[FaceResult], classes: Sequence[str],
                 distances: Sequence[float | None], threshold: float, *, status: str = "",
                 prompt: str = "", banner: tuple[str, bool] | None = None) -> np.ndarray:
    """A copy of ``rgb`` with face boxes (green = identity match, red = no match),
    the distance, expression bars of the first face, a status line and a prompt.

    Args:
        distances: identity distance per face (``None``: unknown, drawn grey).
        banner: (text, accepted) drawn large across the frame at the end.
    """
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 900)
    for face, dist in zip(faces, distances):
        color = GRAY if dist is None else (GREEN if dist <= threshold else RED)
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, max(1, int(2 * scale)))
        label = "id ?" if dist is None else f"id d={dist:.2f}"
        _text(out, label, (x1, max(12, y1 - 6)), scale, color)
    if faces:
        probs = faces[0].expressions
        bar_w = int(w * 0.22)
        line = int(22 * scale * 1.6)
        for i, (name, p) in enumerate(zip(classes, probs)):
            y = int(10 + i * line)
            cv2.rectangle(out, (8, y), (8 + int(bar_w * float(p)), y + line - 4), (70, 130, 230), -1)
            _text(out, f"{name} {float(p):.2f}", (12, y + line - 8), scale * 0.8, WHITE)
    if prompt:
        _text(out, prompt, (8, h - int(40 * scale) - 8), scale * 1.2, WHITE, 2)
    if status:
        _text(out, status, (8, h - 8), scale, WHITE)
    if banner:
        text, ok = banner
        size = cv2.getTextSize(text, FONT, scale * 3, 4)[0]
        org = ((w - size[0]) // 2, (h + size[1]) // 2)
        _text(out, text, org, scale * 3, GREEN if ok else RED, 4)
    return out


def plot_timeline(path: str | os.PathLike, times: Sequence[float], expressions: np.ndarray,
                  classes: Sequence[str], distances: Sequence[float | None], threshold: float,
                  phases: Sequence[tuple[str, float, float]], *, highlight: Sequence[str] = (),
                  title: str = "", expression_threshold: float | None = None, deadline: float | None = None,
                  reasons: Sequence[str] = ()) -> None:
    """Expression probabilities and identity distance over time, phases shaded, to a PNG.

    Args:
        expressions: (T, C) probabilities of the tracked face (NaN rows: no face).
        distances: identity distance per frame (``None``: no face).
        phases: (name, start, end) spans to shade.
        highlight: classes drawn thick (Neutral and the challenge's expressions).
        expression_threshold: drawn as a dashed line on the probabilities.
        deadline: the challenge's deadline (clip time), a vertical line.
        reasons: the decision's reasons, written under the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facelivenet.utils import atomic_path

    t = np.asarray(times, float)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 2))
    for j, name in enumerate(classes):
        thick = name in highlight
        ax1.plot(t, expressions[:, j], lw=2.2 if thick else 0.8, alpha=1.0 if thick else 0.5, label=name)
    if expression_threshold is not None:
        ax1.axhline(expression_threshold, color="grey", ls="--", lw=1,
                    label=f"threshold {expression_threshold:.2f}")
    if deadline is not None and t.size and deadline <= t.max():  # (past the clip's end: not drawn)
        for ax in (ax1, ax2):
            ax.axvline(deadline, color="r", ls=":", lw=1.2, label="deadline" if ax is ax2 else None)
    ax1.set_ylabel("expression probability")
    ax1.set_ylim(0, 1)
    ax1.legend(loc="upper right", ncol=4, fontsize=8)
    d = np.array([np.nan if v is None else v for v in distances], float)
    ax2.plot(t, d, color="k", lw=1.5, label="identity distance")
    ax2.axhline(threshold, color="r", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax2.set_ylabel("squared L2 distance")
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="upper right", fontsize=8)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, start, end) in enumerate(phases):
        for ax in (ax1, ax2):
            ax.axvspan(start, max(end, start + 1e-3), color=colors[k % len(colors)], alpha=0.15)
        ax1.text(start, 0.97, name, va="top", fontsize=9)
    if title or reasons:
        text = title + ("\n" + "; ".join(reasons) if reasons else "")
        fig.suptitle(text[:300], fontsize=10 if reasons else 12)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
