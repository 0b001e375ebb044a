"""The model fingerprint a gallery is tied to: embeddings only make sense for the model
that computed them, so every gallery records this hash and refuses another model."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from facelivenet.errors import InputError

_FINGERPRINT_DOMAIN = b"facelivenet-model-fingerprint-v1\0"


def model_fingerprint(model: Any) -> str:
    """A stable hash of a model's configuration and weights: ``"sha256:<64 hex>"``.

    Accepts a :class:`~facelivenet.api.FaceModel` or its Keras network. Two models
    give the same fingerprint exactly when their :class:`NetworkConfig` and every
    weight (trainable or not, in layer order; shapes, dtypes and values) are equal,
    so a model saved and loaded again keeps its fingerprint.
    """
    stored = getattr(model, "fingerprint", None)
    if isinstance(stored, str):  # an ONNX model carries its Keras model's fingerprint
        return stored
    network = getattr(model, "network", model)
    config = getattr(network, "network_config", None)
    if config is None:
        raise InputError(f"not a facelivenet model: {type(model).__name__} has no network_config")
    h = hashlib.sha256(_FINGERPRINT_DOMAIN)
    h.update(json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for w in network.weights:
        arr = np.ascontiguousarray(np.asarray(w.numpy()))
        h.update(f"\0{arr.dtype.str}{arr.shape}\0".encode("ascii"))
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def short_fingerprint(fingerprint: str) -> str:
    return fingerprint[:19] + "…" if len(fingerprint) > 20 else fingerprint
