"""Saving and loading FaceLiveNet models as single ``.keras`` files.

The ``.keras`` archive holds the architecture config (a :class:`NetworkConfig`, which
also carries the class names, preprocessing and thresholds) and the weights. Writes
are atomic: a temporary file in the target directory is renamed over the target.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from facelivenet.errors import ModelLoadError
from facelivenet.models.network import FaceLiveNet
from facelivenet.paths import default_model_path, resolve_model_path  # noqa: F401 (re-exported)
from facelivenet.utils import atomic_path

#: Largest ``config.json`` / ``metadata.json`` in a model archive (ours are under 1 KB).
MAX_CONFIG_BYTES = 1 << 20
#: Largest total uncompressed size of a model archive's members (the default model: 14 MB).
MAX_ARCHIVE_BYTES = 1 << 30


def save_network(network: FaceLiveNet, path: str | os.PathLike) -> Path:
    """Write ``network`` to ``path`` (must end in ``.keras``) atomically; return the path."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelLoadError(f"{path}: a model file name must end in .keras")
    with atomic_path(path, suffix=".keras") as tmp:
        network.save(tmp)
    return path


def load_network(path: str | os.PathLike | None = None) -> FaceLiveNet:
    """Load a :class:`FaceLiveNet` from a ``.keras`` file (the default model when None).

    Raises :class:`ModelLoadError` naming the file when it is missing, not a Keras
    archive, or a Keras model that is not a FaceLiveNet.
    """
    p = resolve_model_path(path)
    if not zipfile.is_zipfile(p):
        raise ModelLoadError(f"{p}: not a .keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(p) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{p}: unreadable model file ({exc})") from None
    sizes = {m.filename: m.file_size for m in members}
    if "config.json" not in sizes:
        raise ModelLoadError(f"{p}: not a Keras 3 model file (no config.json inside)")
    # Checked before Keras inflates anything (zipfile never reads past a member's size).
    for name in ("config.json", "metadata.json"):
        if sizes.get(name, 0) > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{p}: {name} inflates to {sizes[name]:,} bytes, more than the "
                                 f"{MAX_CONFIG_BYTES:,} a model's config takes; not loaded")
    total = sum(sizes.values())
    if total > MAX_ARCHIVE_BYTES:
        raise ModelLoadError(f"{p}: its members inflate to {total:,} bytes, more than the "
                             f"{MAX_ARCHIVE_BYTES:,} accepted for a model; not loaded")
    try:
        model = keras.saving.load_model(p, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a foreign or broken file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{p}: not a facelivenet model ({reason})") from None
    if not isinstance(model, FaceLiveNet):
        raise ModelLoadError(
            f"{p}: a Keras model of class {type(model).__name__}, not a facelivenet model"
        )
    return model
