"""Shared by the benches: FLOPs of Keras layers and the measured matmul peak."""

from __future__ import annotations

import time

import keras
import tensorflow as tf


def layer_flops(layers) -> int:
    """2 x multiply-adds of the Conv2D and Dense layers among ``layers`` (one image)."""
    total = 0
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.units
    return total


def matmul_peak(dtype: tf.DType, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured FLOP/s of an n x n x n matmul in ``dtype`` (best of repeated runs)."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        f(a).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best
