"""Export of the two-branch face network (TensorFlow-only module).

The exported artefact (any of :data:`~facelivenet.export.formats.FORMATS`) takes a
(N, S, S, 3) uint8 RGB batch named ``image`` and gives two named outputs,
``embedding`` (N, D) and ``expression_probs`` (N, C). For ``tflite-int8`` the
representative dataset is real face crops; the softmax and L2-normalisation tails stay
float. :func:`facelivenet.export.parity.check_parity` then compares the artefact with
our Keras model on real faces.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facelivenet.export.formats import write_artefact
from facelivenet.models.compiled import inference_model
from facelivenet.models.network import FaceLiveNet


def _serving_function(network: FaceLiveNet):
    """(inference model, tf.function ``serve(image) -> {embedding, expression_probs}``)."""
    import tensorflow as tf

    infer = inference_model(network)
    size = network.network_config.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="image")])
    def serve(image):
        embedding, probs = infer(image, training=False)
        return {"embedding": embedding, "expression_probs": probs}

    return infer, serve


def export(network: FaceLiveNet, fmt: str, out: str | os.PathLike, *, calibration: np.ndarray | None = None) -> Path:
    """Export ``network`` in format ``fmt`` to ``out``.

    Args:
        fmt: one of :data:`~facelivenet.export.formats.FORMATS`.
        calibration: (N, S, S, 3) uint8 real face crops (required for ``tflite-int8``).
    """
    _, serve = _serving_function(network)
    batches = None if calibration is None else [calibration[i : i + 1] for i in range(len(calibration))]
    return write_artefact(serve, fmt, out, batches)
