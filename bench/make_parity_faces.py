"""Regenerate data/parity-faces/: face crops of NASA's public-domain astronaut portrait.

The portrait (Eileen Collins) ships with scikit-image as ``skimage.data.astronaut()``;
it is in the public domain. Eight 160x160 crops with small shifts, scales, a flip and
brightness changes are the default real faces of ``facelivenet export``'s parity check.

    .venv/bin/python bench/make_parity_faces.py
"""

from pathlib import Path

import cv2
import numpy as np
import skimage.data

OUT = Path(__file__).resolve().parent.parent / "data" / "parity-faces"
FACE = (170, 30, 290, 200)  # x1, y1, x2, y2 of the head in the 512x512 portrait


def main() -> None:
    img = skimage.data.astronaut()
    OUT.mkdir(parents=True, exist_ok=True)
    x1, y1, x2, y2 = FACE
    variants = [
        ("centre", 0, 0, 1.00, 1.0, False),
        ("left", -12, 0, 1.00, 1.0, False),
        ("down", 0, 10, 1.00, 1.0, False),
        ("tight", 0, 5, 0.85, 1.0, False),
        ("wide", 0, 0, 1.20, 1.0, False),
        ("flip", 0, 0, 1.00, 1.0, True),
        ("dark", 5, -5, 1.00, 0.6, False),
        ("bright", -5, 5, 1.05, 1.3, False),
    ]
    for name, dx, dy, scale, gain, flip in variants:
        cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
        half = max(x2 - x1, y2 - y1) * scale / 2
        a, b = int(max(cx - half, 0)), int(max(cy - half, 0))
        crop = img[b : int(cy + half), a : int(cx + half)]
        crop = cv2.resize(crop, (160, 160), interpolation=cv2.INTER_AREA)
        crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        if flip:
            crop = crop[:, ::-1]
        cv2.imwrite(str(OUT / f"astronaut_{name}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    print(f"wrote {len(variants)} crops to {OUT}")


if __name__ == "__main__":
    main()
