"""Benchmark of facelivenet's MTCNN against ipazc/mtcnn (same weights): faces and speed.

    .venv/bin/python bench/detect.py                      # everything
    .venv/bin/python bench/detect.py --skip-align --repeats 10
    .venv/bin/python bench/detect.py --runtime onnx --skip-align   # our cascade on ONNX Runtime

1. Correctness: on every photo of ../shared/data/photos and N CelebA photos, each face
   ipazc/mtcnn finds with score > 0.9 must be matched by one of ours with IoU >= 0.95,
   and each of ours with score > 0.9 by one of ipazc's (both run with O-Net threshold
   0.7, min face 20).
2. Speed: median ms per frame of both (calls taking turns) on 640x480 and 1280x720
   frames cut from two real photos; also ours with ``downscale=2``.
3. ``facelivenet align`` throughput (images/s) on N CelebA photos with 1 and --workers
   processes (start-up included).

ipazc/mtcnn is the ``mtcnn`` package; it is imported here only (our code reads its
weight files, never its classes). The shared CPU makes the timings indicative.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACELIVENET_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCORE = 0.9
IOU = 0.95


def celeba_sample(n: int) -> list[Path]:
    paths = sorted((DATA / "celeba-identities").glob("*/*.jpg"))
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def photo_paths() -> list[Path]:
    return sorted(p for p in (DATA / "photos").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover width x height, then cut the centre out."""
    import cv2

    h, w = image.shape[:2]
    s = max(width / w, height / h)
    big = cv2.resize(image, (max(width, round(w * s)), max(height, round(h * s))), interpolation=cv2.INTER_AREA)
    y0, x0 = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width])


def ipazc_faces(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ipazc/mtcnn → boxes (N, 4) xyxy, scores (N,)."""
    out = model.detect_faces(image, box_format="xyxy", output_type="numpy", threshold_onet=0.7)
    out = np.asarray(out, dtype=np.float64).reshape(-1, 16) if len(out) else np.zeros((0, 16))
    return out[:, 1:5], out[:, 5]


def ours_faces(detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = detector.detect(image)
    return np.array([f.box for f in found]).reshape(-1, 4), np.array([f.score for f in found])


def unmatched(boxes_a, scores_a, boxes_b) -> list[tuple[float, float]]:
    """(score, best IoU) of each box of a with score > SCORE that no box of b matches."""
    from facelivenet.detect.boxes import iou

    sure = scores_a > SCORE
    if not sure.any():
        return []
    best = iou(boxes_a[sure], boxes_b).max(axis=1) if len(boxes_b) else np.zeros(sure.sum())
    return [(float(s), float(v)) for s, v in zip(scores_a[sure], best) if v < IOU]


def correctness(detector, model, paths: list[Path]) -> bool:
    from facelivenet.images import read_image

    theirs_n = ours_n = 0
    misses = []
    ious = []
    for p in paths:
        image = read_image(p)
        tb, ts = ipazc_faces(model, image)
        ob, os_ = ours_faces(detector, image)
        theirs_n += int((ts > SCORE).sum())
        ours_n += int((os_ > SCORE).sum())
        for side, a, sa, b in (("ipazc", tb, ts, ob), ("ours", ob, os_, tb)):
            for score, best in unmatched(a, sa, b):
                misses.append(f"  {p.relative_to(DATA)}: {side} face (score {score:.3f}) best IoU {best:.3f}")
        if len(tb) and len(ob):
            from facelivenet.detect.boxes import iou

            m = iou(tb[ts > SCORE], ob)
            if m.size:
                ious.extend(m.max(axis=1).tolist())
    print(f"faces with score > {SCORE}: ipazc {theirs_n}, ours {ours_n}; "
          f"unmatched at IoU >= {IOU}: {len(misses)}; median IoU of ipazc's faces to ours "
          f"{np.median(ious) if ious else float('nan'):.4f}, min {min(ious) if ious else float('nan'):.4f}")
    for line in misses:
        print(line)
    return not misses


def interleaved(fns: dict, repeats: int) -> dict:
    """Median ms of each ``fns[name]()``, the calls taking turns (so all see the same load).

    Each function is called twice to warm up first.
    """
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        fn(), fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: 1000 * float(np.median(v)) for name, v in times.items()}


def speed(detector, model, repeats: int) -> None:
    from facelivenet.images import read_image

    sources = [read_image(DATA / "photos" / "two_people.jpg"), read_image(DATA / "photos" / "obama-480p.jpg")]
    for width, height in ((640, 480), (1280, 720)):
        frames = [frame(s, width, height) for s in sources]
        runs = [
            interleaved({
                "ours": lambda: detector.detect(f),
                "ipazc": lambda: model.detect_faces(f),
                "ours_small": lambda: detector.detect(f, downscale=2),
            }, repeats)
            for f in frames
        ]
        ours, theirs, small = (np.mean([r[k] for r in runs]) for k in ("ours", "ipazc", "ours_small"))
        print(f"{width}x{height}: ours {ours:6.1f} ms/frame, ipazc/mtcnn {theirs:6.1f} ms/frame, "
              f"ratio {theirs / ours:4.1f}x; ours with downscale=2 {small:6.1f} ms/frame "
              f"(faces: {len(detector.detect(frames[0]))}, {len(detector.detect(frames[1]))})")


def align_throughput(paths: list[Path], workers: int) -> None:
    from facelivenet.detect.batch_align import AlignSettings, align_dataset

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        for p in paths:  # symlinks: the data stays where it is
            (src / p.parent.name).mkdir(parents=True, exist_ok=True)
            (src / p.parent.name / p.name).symlink_to(p.resolve())
        for n in sorted({1, workers}):
            summary = align_dataset(src, Path(tmp) / f"out{n}", AlignSettings(), workers=n)
            print(f"align --workers {n}: {summary.line()} (start-up included)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--celeba", type=int, default=200, help="CelebA photos for correctness and align")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per frame and detector")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runtime", choices=("keras", "onnx"), default="keras",
                    help="our detector's runtime (align always runs on Keras)")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-align", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"shared data not found: {DATA}", file=sys.stderr)
        return 2
    from mtcnn import MTCNN

    if args.runtime == "onnx":
        from facelivenet.runtime import OnnxFaceDetector as FaceDetector
    else:
        from facelivenet.detect import FaceDetector

    detector, model = FaceDetector().load(), MTCNN()
    print(f"ours: {detector!r}")
    ok = True
    if not args.skip_correctness:
        ok = correctness(detector, model, photo_paths() + celeba_sample(args.celeba))
    if not args.skip_speed:
        speed(detector, model, args.repeats)
    if not args.skip_align:
        align_throughput(celeba_sample(args.celeba), args.workers)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
