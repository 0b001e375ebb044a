"""Where the ONNX files of a model live, and the key that says they belong to it (no TensorFlow).

An entry is a folder holding the ``.onnx`` files and a ``meta.json`` written last
(after the parity check passed), so a folder without it is an interrupted build and is
built again. The key is the SHA-256 of the file(s) the entry was exported from: a model
file rewritten with other weights gets a new entry, and reading the key costs one pass
over the file (about 30 ms for the 14 MB default model), not a TensorFlow import.

Entries are looked up (:func:`find_entry`) first in the package, where
``bin/build-onnx`` ships the default model's network and the MTCNN stages under
``facelivenet/_bundled/onnx/<kind>/`` (used only when the ``key`` their ``meta.json``
records is the key of the file at hand), then in the user cache,
``<cache root>/<kind>/<key>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from facelivenet.paths import BUNDLED_DIR

#: Environment variable that moves the cache (tests; read-only homes).
CACHE_ENV = "FACELIVENET_CACHE"
#: Version of the entries' layout; part of every key so a new layout never reads an old one.
LAYOUT = "onnx-v1"
META = "meta.json"
#: The entries shipped in the package (``bin/build-onnx``): ``<BUNDLED_ONNX>/{network,detector}``.
BUNDLED_ONNX = BUNDLED_DIR / "onnx"


def cache_root() -> Path:
    """``$FACELIVENET_CACHE``, else ``$XDG_CACHE_HOME/facelivenet``, else ``~/.cache/facelivenet``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "facelivenet"


def file_digest(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-256 of the bytes of ``paths`` in order (and of the layout version), as hex."""
    h = hashlib.sha256(LAYOUT.encode("ascii"))
    for p in paths:
        h.update(b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def entry_dir(kind: str, key: str) -> Path:
    """The folder of one entry (``kind``: ``network`` or ``detector``)."""
    return cache_root() / kind / key[:32]


def bundled_dir(kind: str) -> Path:
    """The package's own entry of ``kind`` (``network``: the default model's; ``detector``)."""
    return BUNDLED_ONNX / kind


def find_entry(kind: str, key: str) -> Path | None:
    """The complete entry for ``key``: the bundled one when it was built from the same
    bytes, else the user cache's; None when neither exists."""
    bundled = bundled_dir(kind)
    meta = read_meta(bundled)
    if meta is not None and meta.get("key") == key:
        return bundled
    folder = entry_dir(kind, key)
    return folder if read_meta(folder) is not None else None


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The entry's metadata, or None when the entry is absent or incomplete."""
    try:
        return json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (the mark that the entry is complete)."""
    tmp = folder / f".{META}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / META)
