"""The one inference entry point: :func:`load_model` → :class:`FaceModel` → :meth:`FaceModel.analyze`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facelivenet.config import NetworkConfig
from facelivenet.preprocess import prepare_faces

if TYPE_CHECKING:
    from facelivenet.models.network import FaceLiveNet

# The Keras modules are imported where they are used, so that :class:`Analysis` (which the
# ONNX runtime returns too) and this module can be imported without TensorFlow.

#: Faces per compiled forward call in :meth:`FaceModel.analyze` (bounds memory).
MAX_BATCH = 64


@dataclass(frozen=True)
class Analysis:
    """Network outputs for N faces.

    Attributes:
        embeddings: (N, D) float32, unit L2 norm per row.
        expressions: (N, C) float32 probabilities, rows sum to 1, columns in
            ``expression_classes`` order.
        expression_classes: the C class names.
    """

    embeddings: np.ndarray
    expressions: np.ndarray
    expression_classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def top_expressions(self) -> list[str]:
        """Most probable class name per face."""
        return [self.expression_classes[i] for i in np.argmax(self.expressions, axis=1)]

    def probability(self, name: str) -> np.ndarray:
        """(N,) probability of one named class."""
        return self.expressions[:, self.expression_classes.index(name)]


class BatchedFaceModel:
    """What every runtime's face model shares: the config's class names and input size,
    and :meth:`analyze` over chunks of ``MAX_BATCH`` crops; a runtime supplies
    :meth:`_run` (one chunk through its network)."""

    config: NetworkConfig

    @property
    def expression_classes(self) -> tuple[str, ...]:
        return self.config.expression_classes

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, expression probabilities) of one prepared chunk."""
        raise NotImplementedError

    def analyze(self, faces) -> Analysis:
        """Embeddings and expression probabilities for a batch of face crops.

        Args:
            faces: (N, H, W, 3) uint8 RGB face crops (or a list of crops of any size
                and colour layout); resized to the model's input size when needed.

        Returns:
            :class:`Analysis` from one forward per chunk of ``MAX_BATCH``.
        """
        batch = prepare_faces(faces, self.image_size)
        n = batch.shape[0]
        if n == 0:
            return Analysis(
                np.zeros((0, self.config.embedding_size), np.float32),
                np.zeros((0, len(self.expression_classes)), np.float32),
                self.expression_classes,
            )
        embs, probs = [], []
        for start in range(0, n, MAX_BATCH):
            e, p = self._run(batch[start : start + MAX_BATCH])
            embs.append(e)
            probs.append(p)
        return Analysis(
            np.concatenate(embs).astype(np.float32, copy=False),
            np.concatenate(probs).astype(np.float32, copy=False),
            self.expression_classes,
        )


class FaceModel(BatchedFaceModel):
    """A loaded FaceLiveNet ready for inference.

    Attributes:
        network: the Keras :class:`FaceLiveNet`.
        config: its :class:`NetworkConfig` (architecture, preprocessing, thresholds).
        source: the file it was loaded from, if any.
    """

    def __init__(self, network: FaceLiveNet, source: Path | None = None):
        self.network = network
        self.config: NetworkConfig = network.network_config
        self.source = source
        self._forward = None

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._forward is None:  # compiled on first use
            from facelivenet.models.compiled import compile_forward

            self._forward = compile_forward(self.network)
        return self._forward(batch)

    def save(self, path: str | os.PathLike) -> Path:
        """Save to a single ``.keras`` file (atomically)."""
        from facelivenet.models.io import save_network

        return save_network(self.network, path)

    def summary_dict(self) -> dict:
        """Architecture, parameter counts, classes, preprocessing and thresholds."""
        from facelivenet.models.network import count_params

        cfg = self.config
        return {
            "source": str(self.source) if self.source else None,
            "config": cfg.to_dict(),
            "parameters": {
                "total": int(self.network.count_params()),
                "trainable": count_params([self.network]),
                "stem_and_branch1": count_params(self.network.verification_layers()),
            },
            "inputs": {"image": [None, cfg.image_size, cfg.image_size, 3], "dtype": "uint8 RGB"},
            "outputs": {
                "embedding": [None, cfg.embedding_size],
                "expression_probs": [None, len(cfg.expression_classes)],
            },
        }


def load_model(path: str | os.PathLike | None = None) -> FaceModel:
    """Load a model file (the bundled default in ``models/`` when ``path`` is None)."""
    from facelivenet.models.io import load_network, resolve_model_path

    p = resolve_model_path(path)
    return FaceModel(load_network(p), source=p)


def new_model(config: NetworkConfig | None = None, *, seed: int | None = None) -> FaceModel:
    """A freshly initialised model (Glorot weights, zero biases) for ``config``."""
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    from facelivenet.models.network import FaceLiveNet

    return FaceModel(FaceLiveNet(config or NetworkConfig()))
