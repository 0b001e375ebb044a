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

from facelivenet.api import MAX_BATCH, Analysis
from facelivenet.config import NetworkConfig
from facelivenet.preprocess import prepare_faces


class OnnxFaceModel:
    """A face network exported to ONNX, with the config of the model it came from.

    Attributes:
        config: the Keras model's :class:`NetworkConfig`.
        source: the ``.keras`` file it was exported from.
        fingerprint: that model's fingerprint (``"sha256:…"``).
        path: the ``.onnx`` file.
    """

    runtime = "onnx"

    def __init__(self, path: str | Path, meta: dict[str, Any], source: Path | None = None):
        from facelivenet.runtime.detector import session

        self.path = Path(path)
        self.config = NetworkConfig.from_dict(meta["config"])
        self.fingerprint: str = meta["fingerprint"]
        self.source = source
        self._session = session(self.path, threads=0)
        self._input = self._session.get_inputs()[0].name

    @property
    def expression_classes(self) -> tuple[str, ...]:
        return self.config.expression_classes

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def analyze(self, faces) -> Analysis:
        """Embeddings and expression probabilities, as :meth:`facelivenet.api.FaceModel.analyze`."""
        batch = prepare_faces(faces, self.image_size)
        if batch.shape[0] == 0:
            return Analysis(np.zeros((0, self.config.embedding_size), np.float32),
                            np.zeros((0, len(self.expression_classes)), np.float32), self.expression_classes)
        embs, probs = [], []
        for start in range(0, batch.shape[0], MAX_BATCH):
            e, p = self._session.run(["embedding", "expression_probs"],
                                     {self._input: np.ascontiguousarray(batch[start : start + MAX_BATCH])})
            embs.append(e)
            probs.append(p)
        return Analysis(np.concatenate(embs).astype(np.float32, copy=False),
                        np.concatenate(probs).astype(np.float32, copy=False), self.expression_classes)


def load_onnx_model(path: str | Path | None = None, *, build: bool = True) -> OnnxFaceModel:
    """The ONNX twin of the model file ``path`` (the default model when None).

    Built (TensorFlow, once) and cached on first use when ``build``; else a missing
    entry is a :class:`~facelivenet.errors.ModelLoadError`.
    """
    from facelivenet.runtime.inference import network_entry
    from facelivenet.paths import resolve_model_path

    source = resolve_model_path(path)
    folder, meta = network_entry(source, build=build)
    return OnnxFaceModel(folder / "network.onnx", meta, source)
