"""Training-throughput benchmark (stage 1 step) on this machine.

Prints, for each preset at the given input size and each precision: the measured
training throughput (images/s) of one compiled stage-1 step (forward, backward,
optimizer update, center update; stem + branch 1 + identity head, ICPR loss) on a
fixed in-memory batch, and in the same run the hardware bound
``peak / (3 x forward FLOPs per image)`` with the matmul peak measured in the same
precision. (3 x forward: the backward pass costs about twice the forward.)

    .venv/bin/python bench/train.py [--presets full,simple] [--size 160] [--batch 32]
                                    [--steps 5] [--precisions fp32,bf16] [--ids 1000]
                                    [--width 1.0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from hw import layer_flops, matmul_peak  # noqa: E402  (bench/hw.py)

from facelivenet.config import NetworkConfig  # noqa: E402
from facelivenet.models.network import FaceLiveNet  # noqa: E402
from facelivenet.train.distribute import precision_policy  # noqa: E402
from facelivenet.train.options import VerificationLossConfig  # noqa: E402
from facelivenet.train.stages import VerificationStage  # noqa: E402
from facelivenet.train.steps import make_optimizer, make_step  # noqa: E402


def train_throughput(cfg: NetworkConfig, precision: str, batch: int, steps: int, ids: int) -> tuple[float, int]:
    """(images/s of the best step, training FLOPs per image = 3 x forward) for one configuration."""
    strategy = tf.distribute.get_strategy()
    with precision_policy(precision):
        keras.utils.set_random_seed(0)
        stage = VerificationStage(FaceLiveNet(cfg), ids, VerificationLossConfig())
        optimizer = make_optimizer("adam", 1e-3)
        optimizer.build(stage.trainable_variables())
        step = make_step(stage, optimizer, None, strategy, batch)
        rng = np.random.default_rng(0)
        images = tf.constant(rng.integers(0, 255, (batch, cfg.image_size, cfg.image_size, 3), dtype=np.uint8))
        labels = tf.constant(rng.integers(0, ids, batch).astype(np.int32))
        step(images, labels)["loss"].numpy()          # trace + warm-up
        best = float("inf")
        for _ in range(steps):
            t = time.perf_counter()
            step(images, labels)["loss"].numpy()
            best = min(best, time.perf_counter() - t)
        flops = 3 * layer_flops(list(stage.body.layers) + [stage.term.head])
    return batch / best, flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="full,simple")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (best is reported)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--ids", type=int, default=1000, help="identities of the training head")
    ap.add_argument("--width", type=float, default=1.0, help="filter-count multiplier (NetworkConfig.width)")
    args = ap.parse_args()

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; "
          f"stage-1 step, batch {args.batch}, {args.size}x{args.size}, width {args.width}, {args.ids} identities")
    peaks = {}
    for precision in args.precisions.split(","):
        dtype = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}[precision]
        peaks[precision] = matmul_peak(dtype)
    print("matmul peak: " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peaks.items()))
    for preset in args.presets.split(","):
        cfg = NetworkConfig.from_preset(preset, image_size=args.size, embedding_size=128,
                                        width=args.width)
        for precision in args.precisions.split(","):
            rate, flops = train_throughput(cfg, precision, args.batch, args.steps, args.ids)
            bound = peaks[precision] / flops
            print(f"[{preset:6s}] {precision}: {rate:8.1f} images/s   bound {bound:8.1f} images/s "
                  f"(3 x {flops / 3e9:.2f} GFLOPs/image)   {rate / bound:5.2f} of bound")


if __name__ == "__main__":
    main()
