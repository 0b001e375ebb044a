"""End-to-end offline verification speed: frames/s on real clips, detection vs network.

Builds a 480x480 and a 640x480 clip from ../shared/data/videos/d18.mp4 (the latter padded
left and right), then runs the verify-video pipeline (detector + alignment + network +
challenge engine) on every frame and prints frames/s and where the time goes.
Without --model a fresh simple-preset model at 160 px stands in (speed does not depend
on the weights).

    .venv/bin/python bench/e2e.py [--model M.keras] [--clip PATH] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facelivenet.api import load_model, new_model  # noqa: E402
from facelivenet.auth.analyzer import FrameAnalyzer  # noqa: E402
from facelivenet.auth.challenge import Challenge, ChallengeSettings  # noqa: E402
from facelivenet.auth.verify import verify_clip  # noqa: E402
from facelivenet.config import NetworkConfig  # noqa: E402
from facelivenet.video import VideoWriter, read_frames  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "d18.mp4"


def make_clip(src: Path, out: Path, size: tuple[int, int]) -> Path:
    """Copy ``src`` into a ``size`` (w, h) clip: centred, padded with black, never upscaled."""
    info, frames = read_frames(src)
    w, h = size
    scale = min(w / info.width, h / info.height, 1.0)
    nw, nh = int(info.width * scale), int(info.height * scale)
    with VideoWriter(out, info.fps, size) as writer:
        for f in frames:
            canvas = np.zeros((h, w, 3), np.uint8)
            img = cv2.resize(f.image, (nw, nh), interpolation=cv2.INTER_AREA) if scale < 1 else f.image
            y, x = (h - nh) // 2, (w - nw) // 2
            canvas[y : y + nh, x : x + nw] = img
            writer.write(canvas)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    model = load_model(args.model) if args.model else new_model(NetworkConfig.from_preset("simple"), seed=0)
    analyzer = FrameAnalyzer(model)
    settings = ChallengeSettings.for_model(model.config)
    first = read_frames(args.clip, max_frames=1)[1][0].image
    reference = model.analyze(analyzer.align(first, analyzer.detect(first)[0], model.image_size,
                                             model.config.alignment, model.config.margin)[None]).embeddings
    print(f"model: {args.model or 'fresh simple'} ({model.config.preset}, {model.image_size} px); "
          f"clip source {args.clip}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((480, 480), (640, 480)):
            clip = make_clip(Path(args.clip), Path(tmp) / f"clip_{size[0]}x{size[1]}.mp4", size)
            best = None
            for _ in range(args.repeats):
                t = time.perf_counter()
                r = verify_clip(clip, analyzer, reference, Challenge.for_clip(("surprise",), 15.0), settings)
                wall = time.perf_counter() - t
                if best is None or wall < best[0]:
                    best = (wall, r)
            wall, r = best
            n = r.frames_analyzed
            faces = sum(len(a.faces) for a in r.analyses)
            decode = wall - r.seconds["detect"] - r.seconds["network"]
            print(f"{size[0]}x{size[1]}: {n} frames, {faces} faces: {n / wall:5.1f} frames/s end to end | "
                  f"detect {r.seconds['detect'] / n * 1e3:5.1f} ms/frame, network {r.seconds['network'] / n * 1e3:5.1f} "
                  f"ms/frame, decode+align+engine {decode / n * 1e3:5.1f} ms/frame | decision {r.decision.decision}")


if __name__ == "__main__":
    main()
