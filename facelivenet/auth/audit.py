"""Audit images of a decision (as AWS Rekognition Face Liveness returns them): the
reference face, and the best frame of each completed step (Neutral and every
challenged expression), with the face box and the numbers that decided it.

The best frame of a step is its counted frame with the highest probability of the
step's expression. Frames are read back from the clip by index; nothing is re-analysed.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import cv2
import numpy as np

from facelivenet.auth.challenge import Decision
from facelivenet.auth.decision import phase_frames
from facelivenet.errors import InputError

REFERENCE_PNG = "reference.png"


def best_frames(decision: Decision) -> list[dict[str, Any]]:
    """Per completed step: the counted frame where its expression was most probable."""
    out = []
    for p in decision.phases:
        if not p.complete:
            continue
        counted = phase_frames(decision, p)
        if not counted:
            continue
        best = max(counted, key=lambda t: t.expressions.get(p.name, 0.0))
        out.append({"step": p.step, "phase": p.name, "frame": best.index, "t": best.timestamp,
                    "box": list(best.box) if best.box else None,
                    "probability": best.expressions.get(p.name), "distance": best.identity_distance,
                    "match": best.identity_match})
    return out


def _draw(rgb: np.ndarray, box: Sequence[float] | None, label: str, ok: bool) -> np.ndarray:
    from facelivenet.auth.render import GREEN, RED, _text

    out = np.ascontiguousarray(rgb.copy())
    scale = max(0.45, min(out.shape[:2]) / 700)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), GREEN if ok else RED, max(2, int(2 * scale)))
    _text(out, label, (8, out.shape[0] - 10), scale, (255, 255, 255))
    return out


def _save(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from facelivenet.utils import atomic_path

    try:
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(rgb).save(tmp, format="PNG")
    except OSError as exc:
        raise InputError(f"{path}: cannot write the audit image ({exc.strerror or exc})") from None


def prepare_audit_dir(directory: str | os.PathLike) -> Path:
    """The audit folder, created if needed (an error if it is a file or cannot be made)."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise InputError(f"{d}: exists and is not a folder (--audit names the folder for the audit images)")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{d}: cannot create the audit folder ({exc.strerror or exc})") from None
    return d


def write_audit(directory: str | os.PathLike, decision: Decision, clip: str | os.PathLike | None = None, *,
                stride: int = 1, reference: tuple[np.ndarray, Sequence[float] | None] | None = None,
                frames: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Write the audit images of ``decision`` on ``clip`` to ``directory``; what was written.

    Args:
        clip: the clip the decision was made on (its frames are read back by index), or
            None with ``frames``: the RGB images by frame index (the live mode keeps
            the best frame of each step in memory: :class:`BestFrames`).
        reference: the reference photo (RGB) and its face box, when the reference was a
            photo (a gallery holds embeddings only: no reference image then).

    Returns:
        ``{"dir", "reference": {"path", "box"} | None, "frames": [{"step", "phase",
        "frame", "t", "box", "probability", "distance", "match", "path"}]}``.
    """
    from facelivenet.video import VideoSource

    d = prepare_audit_dir(directory)
    result: dict[str, Any] = {"dir": str(d), "reference": None, "frames": []}
    if reference is not None:
        image, box = reference
        path = d / REFERENCE_PNG
        _save(path, _draw(image, box, "reference", True))
        result["reference"] = {"path": str(path), "box": None if box is None else [float(v) for v in box]}
    wanted = {b["frame"]: b for b in best_frames(decision)}
    if wanted:
        last = max(wanted)
        if frames is not None:
            source = [SimpleNamespace(index=i, image=frames[i]) for i in sorted(frames) if i in wanted]
        else:
            source = VideoSource(clip, stride=stride)
        for frame in source:
            if frame.index in wanted:
                b = wanted[frame.index]
                name = f"step{b['step']}-{b['phase']}.png"
                label = (f"{b['phase']} p={b['probability']:.2f}  d={b['distance']:.2f}"
                         if b["distance"] is not None else f"{b['phase']} p={b['probability']:.2f}")
                label += f"  frame {b['frame']}  t={b['t']:.2f}s"
                _save(d / name, _draw(frame.image, b["box"], label, bool(b["match"])))
                result["frames"].append({**b, "path": str(d / name)})
            if frame.index >= last:
                break
    result["frames"].sort(key=lambda b: b["step"])
    return result


class BestFrames:
    """Keeps, per step name, the image of the counted frame where its expression was most
    probable so far (what :func:`write_audit` needs from a live stream)."""

    def __init__(self) -> None:
        self._best: dict[str, tuple[float, int, np.ndarray]] = {}

    def observe(self, trace: Any, image: np.ndarray) -> None:
        name = trace.counted_for
        if name is None or not trace.expressions:
            return
        p = float(trace.expressions.get(name, 0.0))
        if name not in self._best or p > self._best[name][0]:
            self._best[name] = (p, trace.index, image.copy())

    @property
    def frames(self) -> dict[int, np.ndarray]:
        return {index: image for _, index, image in self._best.values()}
