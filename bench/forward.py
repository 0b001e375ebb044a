"""Forward-pass benchmark of the two-branch network on this CPU.

Prints, for each preset at the given input size: parameters, FLOPs per face (both
inference branches), ms/face at batch 1 and batch 32 in fp32 and in mixed bfloat16,
and the lower bound FLOPs / measured matmul peak (same precision, same run).

    .venv/bin/python bench/forward.py [--presets full,simple] [--size 160] [--repeats 5]
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
from facelivenet.models.compiled import compile_forward, inference_model  # noqa: E402
from facelivenet.models.network import FaceLiveNet  # noqa: E402


def forward_flops(network: keras.Model) -> int:
    """FLOPs of the inference graph (both branches) for one face."""
    return layer_flops(inference_model(network).layers)


def time_forward(run, batch: np.ndarray, repeats: int) -> float:
    """Best seconds per call of ``run(batch)`` after a warm-up."""
    run(batch)
    run(batch)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run(batch)
        best = min(best, time.perf_counter() - t)
    return best


def build(cfg: NetworkConfig, policy: str, weights=None) -> FaceLiveNet:
    keras.mixed_precision.set_global_policy(policy)
    try:
        net = FaceLiveNet(cfg)
        if weights is not None:
            net.set_weights(weights)
        return net
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="full,simple")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    peak32 = matmul_peak(tf.float32)
    peak16 = matmul_peak(tf.bfloat16)
    print(f"matmul peak: fp32 {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s")
    rng = np.random.default_rng(0)
    for preset in args.presets.split(","):
        cfg = NetworkConfig.from_preset(preset, image_size=args.size)
        net32 = build(cfg, "float32")
        flops = forward_flops(net32)
        params = net32.count_params()
        print(f"\n[{preset}] {args.size}x{args.size}: {params:,} parameters, "
              f"{flops / 1e9:.2f} GFLOPs/face (both branches)")
        nets = {"fp32": net32, "bf16": build(cfg, "mixed_bfloat16", net32.get_weights())}
        for name, net in nets.items():
            run = compile_forward(net)
            peak = peak32 if name == "fp32" else peak16
            bound_ms = flops / peak * 1e3
            for bs in (1, 32):
                x = rng.integers(0, 255, (bs, args.size, args.size, 3), dtype=np.uint8)
                per_face = time_forward(run, x, args.repeats if bs == 32 else 3 * args.repeats) / bs * 1e3
                print(f"  {name} batch {bs:>2}: {per_face:7.2f} ms/face   bound {bound_ms:6.2f} ms/face   "
                      f"ratio {per_face / bound_ms:4.2f}x")


if __name__ == "__main__":
    main()
