"""Backend-specific compilation of the inference forward pass.

The model code is backend-neutral (``keras.ops``/``keras.layers``); this module is
where each backend's compiler is used, so the forward runs as one compiled graph that
is traced once and reused: ``tf.function`` on TensorFlow, ``jax.jit`` on JAX, eager
calls elsewhere. (``model.predict`` per call costs ~3x a compiled call for one face.)
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import ops

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def inference_model(network: keras.Model) -> keras.Model:
    """Sub-model of ``network`` with the two outputs used at inference: embedding, probabilities."""
    return keras.Model(
        network.input,
        [network.get_layer("embedding").output, network.get_layer("expression_probs").output],
        name=f"{network.name}_inference",
    )


def compile_forward(network: keras.Model) -> Forward:
    """Return ``f(batch_uint8) -> (embeddings, probabilities)`` as numpy arrays.

    ``batch_uint8`` is (N, S, S, 3) uint8 with S the model's input side; any N >= 1.
    """
    infer = inference_model(network)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _compile_tensorflow(infer)
    if backend == "jax":
        return _compile_jax(infer)
    return lambda x: tuple(ops.convert_to_numpy(t) for t in infer(x, training=False))


def _compile_tensorflow(infer: keras.Model) -> Forward:
    import tensorflow as tf

    size = infer.input.shape[1]

    @tf.function(
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)],
        reduce_retracing=True,
    )
    def forward(x):
        return infer(x, training=False)

    def run(x: np.ndarray):
        emb, probs = forward(tf.convert_to_tensor(x, tf.uint8))
        return emb.numpy(), probs.numpy()

    run.graph_function = forward  # exposed for tests and benches (tracing count)
    return run


def _compile_jax(infer: keras.Model) -> Forward:
    import jax

    trainable = [v.value for v in infer.trainable_variables]
    non_trainable = [v.value for v in infer.non_trainable_variables]

    @jax.jit
    def forward(tv, ntv, x):
        outputs, _ = infer.stateless_call(tv, ntv, x, training=False)
        return outputs

    def run(x: np.ndarray):
        emb, probs = forward(trainable, non_trainable, x)
        return np.asarray(emb), np.asarray(probs)

    return run
