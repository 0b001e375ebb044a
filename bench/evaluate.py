"""Verification-protocol throughput: pairs/s end to end with --detect on LFW pairs.

Writes a pairs file of the first N/4 same and N/4 different pairs of the first two folds
of ../shared/data/lfw/pairs.txt (N = --pairs, 600 by default), then runs
``evaluate_verification(..., detect=True)`` (read + detect + align + network + metrics)
and prints pairs/s, images/s and where the time went. A warm-up on a few pairs first
builds the detector and network graphs, so the figure is the steady state.
Without --model a fresh simple-preset model at 160 px stands in (speed does not depend
on the weights; the accuracy printed is then chance level).

    .venv/bin/python bench/evaluate.py [--model M.keras] [--pairs 600] [--flip]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facelivenet.api import load_model, new_model  # noqa: E402
from facelivenet.config import NetworkConfig  # noqa: E402
from facelivenet.data.pairs import read_pairs  # noqa: E402
from facelivenet.detect import FaceDetector  # noqa: E402
from facelivenet.eval.verification import evaluate_verification  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LFW = ROOT.parent / "shared" / "data" / "lfw"


def small_pairs_file(src: Path, out: Path, n_pairs: int) -> Path:
    """The first n/4 same and n/4 different pairs of each of the first two folds of ``src``."""
    lines = src.read_text().splitlines()
    folds, per_fold = (int(v) for v in lines[0].split())
    q = n_pairs // 4
    if not 1 <= q <= per_fold or folds < 2:
        raise SystemExit(f"--pairs must be in [4, {4 * per_fold}]")
    body = lines[1:]
    chosen = [f"2 {q}"]
    for k in range(2):
        block = body[k * 2 * per_fold : (k + 1) * 2 * per_fold]
        chosen += block[:q] + block[per_fold : per_fold + q]
    out.write_text("\n".join(chosen) + "\n")
    return out


class Timed:
    """Adds up the seconds spent in one method of a wrapped object."""

    def __init__(self, inner, method: str):
        self.inner, self.method, self.seconds = inner, method, 0.0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--lfw", default=str(LFW), help="Folder with pairs.txt and lfw_deepfunneled/.")
    args = ap.parse_args()

    lfw = Path(args.lfw)
    model = load_model(args.model) if args.model else new_model(NetworkConfig.from_preset("simple"), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        warm = read_pairs(small_pairs_file(lfw / "pairs.txt", Path(tmp) / "warm.txt", 8))
        pairs = read_pairs(small_pairs_file(lfw / "pairs.txt", Path(tmp) / "pairs.txt", args.pairs))
    detector = Timed(FaceDetector(), "detect_batch")
    timed_model = Timed(model, "analyze")
    evaluate_verification(timed_model, warm, lfw / "lfw_deepfunneled", detect=True, flip=args.flip,
                          detector=detector)
    detector.seconds = timed_model.seconds = 0.0
    report = evaluate_verification(timed_model, pairs, lfw / "lfw_deepfunneled", detect=True, flip=args.flip,
                                   detector=detector)
    d = report.to_dict()
    other = d["seconds"] - detector.seconds - timed_model.seconds
    print(f"model:       {model.source or 'fresh simple preset (untrained)'}, {model.image_size} px"
          f"{', flip' if args.flip else ''}")
    print(f"pairs:       {d['pairs']} ({d['images']} images, {len(d['no_face'])} without a face)")
    print(f"end to end:  {d['pairs_per_second']:.1f} pairs/s, {d['images'] / d['seconds']:.1f} images/s "
          f"({d['seconds']:.1f} s)")
    print(f"time split:  detection {detector.seconds:.1f} s, network {timed_model.seconds:.1f} s, "
          f"reading/alignment/metrics {other:.1f} s")
    print(f"accuracy:    {d['accuracy']:.4f} ± {d['accuracy_std']:.4f}, AUC {d['auc']:.4f}, EER {d['eer']:.4f}")


if __name__ == "__main__":
    main()
