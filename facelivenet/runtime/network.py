"""The two-branch face network on ONNX Runtime: :class:`OnnxFaceModel` (no TensorFlow).

It answers like :class:`facelivenet.api.FaceModel` (``config``, ``expression_classes``,
``image_size``, ``analyze``) so the face path, the frame analyser and the facade take
either. Its config comes from the cache entry's metadata (written from the Keras model
when the entry was built), and ``fingerprint`` is the Keras model's
:func:`~facelivenet.auth.gallery.model_fingerprint`, so galleries enrolled on one
runtime are accepted on the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facelivenet.api import BatchedFaceModel
from facelivenet.config import NetworkConfig


class OnnxFaceModel(BatchedFaceModel):
    """A face network exported to ONNX, with the config of the model it came from.

    Attributes:
        config: the Keras model's :class:`NetworkConfig`.
        source: the ``.keras`` file it was exported from.
        fingerprint: that model's fingerprint (``"sha256:…"``), whatever the precision.
        precision: ``fp32`` (the export) or ``int8`` (:mod:`facelivenet.runtime.quantize`).
        path: the ``.onnx`` file.
    """

    runtime = "onnx"

    def __init__(self, path: str | Path, meta: dict[str, Any], source: Path | None = None):
        from facelivenet.runtime.detector import session

        self.path = Path(path)
        self.config = NetworkConfig.from_dict(meta["config"])
        self.fingerprint: str = meta["fingerprint"]
        self.precision: str = meta.get("precision", "fp32")
        self.source = source
        self._session = session(self.path, threads=0)
        self._input = self._session.get_inputs()[0].name

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, p = self._session.run(["embedding", "expression_probs"], {self._input: np.ascontiguousarray(batch)})
        return e, p


def load_onnx_model(path: str | Path | None = None, *, build: bool = True, precision: str = "fp32") -> OnnxFaceModel:
    """The ONNX twin of the model file ``path`` (the default model when None).

    Built (TensorFlow, once) and cached on first use when ``build``; else a missing
    entry is a :class:`~facelivenet.errors.ModelLoadError`. ``precision="int8"``: the
    quantised network, built from the float one without TensorFlow.
    """
    from facelivenet.runtime.inference import network_entry
    from facelivenet.runtime.quantize import check_precision
    from facelivenet.paths import resolve_model_path

    precision = check_precision(precision, "onnx")
    source = resolve_model_path(path)
    folder, meta = network_entry(source, build=build, precision=precision)
    return OnnxFaceModel(folder / "network.onnx", meta, source)
