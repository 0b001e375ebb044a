"""Where the ONNX files of a model live, and the key that says they belong to it (no TensorFlow).

An entry is a folder ``<cache root>/<kind>/<key>/`` holding the ``.onnx`` files and a
``meta.json`` written last (after the parity check passed), so a folder without it is
an interrupted build and is built again. The key is the SHA-256 of the file(s) the
entry was exported from: a model file rewritten with other weights gets a new entry,
and reading the key costs one pass over the file, not a TensorFlow import.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

#: Environment variable that moves the cache (tests; read-only homes).
CACHE_ENV = "FACELIVENET_CACHE"
#: Version of the entries' layout; part of every key so a new layout never reads an old one.
LAYOUT = "onnx-v1"
META = "meta.json"


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
