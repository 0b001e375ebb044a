"""The pretrained MTCNN weights that ship inside the ``mtcnn`` package on PyPI.

ipazc/mtcnn (MIT licence) carries ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``: joblib
pickles (lz4-compressed) of plain lists of numpy arrays, in the order of its Keras
models' weights. We read those files only: the package directory is found with
``importlib.util.find_spec`` (which does not execute ``mtcnn/__init__.py``, so neither
its model classes nor its TensorFlow import are loaded) and the file is opened through
``importlib.resources``' file-system reader.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from facelivenet.errors import DetectorError

#: The three cascade networks, in order.
NETWORKS: tuple[str, ...] = ("pnet", "rnet", "onet")


def weights_path(name: str) -> Path:
    """Path of ``mtcnn/assets/weights/<name>.lz4`` in the installed ``mtcnn`` package."""
    if name not in NETWORKS:
        raise DetectorError(f"unknown MTCNN network {name!r}; choose one of {NETWORKS}")
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            "the MTCNN weights come from the 'mtcnn' package (pip install mtcnn>=1.0), "
            "which is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights" / f"{name}.lz4"
    if not path.is_file():
        raise DetectorError(f"MTCNN weights file missing from the mtcnn package: {path}")
    return path


def load_weights(name: str) -> list[np.ndarray]:
    """The weights of one network (``"pnet"``, ``"rnet"`` or ``"onet"``) as float32 arrays."""
    import joblib  # a dependency of mtcnn; imported here so importing facelivenet stays cheap

    path = weights_path(name)
    try:
        arrays = joblib.load(path)
    except Exception as exc:  # a damaged install: say which file
        raise DetectorError(f"cannot read MTCNN weights {path}: {type(exc).__name__}: {exc}") from None
    return [np.asarray(a, dtype=np.float32) for a in arrays]
