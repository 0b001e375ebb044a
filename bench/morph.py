"""Can a cross-fade of two stills be told from real motion? (issue 19, measured, not shipped)

For each genuine clip, the face is cut from every frame (the detector's box of the first
frame, grown 20 %, 64x64 grey). For every window of W frames whose end frames differ
(the top 20 % of the clip's windows by ``|B - A|``: where the face moves or changes
expression), the inner frames are fitted by least squares as ``a*A + b*B`` and the
window's score is the RMS residual over ``|B - A|`` (RMS). A cross-fade of two stills
is such a blend by construction (up to the codec's noise): its score should be near 0,
real motion's not. The cross-fades are made from frames of the same clip (a neutral
frame to the clip's most different frame), written through the mp4v codec and read
back, as an attacker's file would be.

    .venv/bin/python bench/morph.py [--window 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facelivenet.detect import FaceDetector  # noqa: E402
from facelivenet.video import VideoWriter, read_frames  # noqa: E402

VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "videos"


def crops(frames, box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    x1, y1 = int(max(0, x1 - 0.1 * w)), int(max(0, y1 - 0.1 * h))
    x2, y2 = int(x2 + 0.1 * w), int(y2 + 0.1 * h)
    return np.stack([cv2.resize(cv2.cvtColor(f[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY), (64, 64),
                                interpolation=cv2.INTER_AREA).astype(np.float64).ravel() for f in frames])


def window_scores(x: np.ndarray, w: int) -> list[tuple[float, float]]:
    """(change |B-A| RMS, residual / change) for every window of ``w`` frames."""
    out = []
    for s in range(0, len(x) - w + 1):
        a, b = x[s], x[s + w - 1]
        basis = np.stack([a, b], axis=1)
        inner = x[s + 1:s + w - 1].T
        coef, *_ = np.linalg.lstsq(basis, inner, rcond=None)
        resid = inner - basis @ coef
        change = np.sqrt(np.mean((b - a) ** 2))
        out.append((change, np.sqrt(np.mean(resid ** 2)) / max(change, 1e-6)))
    return out


def moving(scores, share=0.2):
    changes = np.array([c for c, _ in scores])
    cut = np.quantile(changes, 1 - share)
    return np.array([r for c, r in scores if c >= cut])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=10)
    args = ap.parse_args()
    det = FaceDetector()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("d18", "d9", "d12"):
            info, frames = read_frames(VIDEOS / f"{name}.mp4")
            images = [f.image for f in frames]
            box = det.detect(images[0])[0].box
            x = crops(images, box)
            real = moving(window_scores(x, args.window))
            far = int(np.argmax(np.mean((x - x[0]) ** 2, axis=1)))
            fade = ([images[0]] * 15 + [cv2.addWeighted(images[0], 1 - k / 9, images[far], k / 9, 0)
                                        for k in range(10)] + [images[far]] * 15)
            path = Path(tmp) / f"{name}-fade.mp4"
            with VideoWriter(path, info.fps, (info.width, info.height)) as w:
                for im in fade:
                    w.write(im)
            _, back = read_frames(path)
            y = crops([f.image for f in back], box)
            faded = [r for c, r in window_scores(y, args.window) if c > 0.5 * np.sqrt(np.mean((y[-1] - y[0]) ** 2))]
            print(f"{name}: real motion, {len(real)} moving windows: residual/change min {real.min():.3f} "
                  f"5th pct {np.quantile(real, 0.05):.3f} median {np.median(real):.3f}; "
                  f"cross-fade (frame 0 -> {far}), {len(faded)} windows: max {max(faded):.3f} "
                  f"median {np.median(faded):.3f}")


if __name__ == "__main__":
    main()
