"""(Re)build the ONNX files shipped in the package: ``bin/build-onnx`` (TensorFlow, tf2onnx).

    python -m facelivenet.runtime.bundle [--force]

Writes ``facelivenet/_bundled/onnx/network/`` (the network of
``models/facelivenet-default.keras``) and ``facelivenet/_bundled/onnx/detector/`` (P-,
R- and O-Net of the installed MTCNN weights, float inputs) through the same export and
parity checks as a first use (:mod:`facelivenet.runtime.build`); each ``meta.json``
records the ``key`` (SHA-256) of the file(s) it was built from and the parity figures.
An entry whose key is already that of the current files is left alone, so the command
can be rerun at any time and rebuilds only what a retrained model (or new MTCNN
weights) made stale; ``tests/test_runtime_default.py`` fails while the shipped network belongs
to another model file.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from facelivenet.paths import DEFAULT_MODEL_NAME, MODELS_DIR
from facelivenet.runtime import cache
from facelivenet.runtime.build import EXPORT_EXTRA, exporter_missing

#: The model whose network ships: the checkout's default model (never $FACELIVENET_MODEL).
SHIPPED_MODEL = MODELS_DIR / DEFAULT_MODEL_NAME


def shipped_keys() -> dict[str, str]:
    """The key each bundled entry must record: ``{"network": ..., "detector": ...}``."""
    from facelivenet.detect.weights import NETWORKS, weights_path

    return {"network": cache.file_digest([SHIPPED_MODEL]),
            "detector": cache.file_digest([weights_path(n) for n in NETWORKS])}


def build_bundled(force: bool = False, log: Callable[[str], None] = print) -> dict[str, bool]:
    """Rebuild the stale bundled entries (all with ``force``); ``{kind: rebuilt}``."""
    from facelivenet.runtime.build import build_detector, build_entry, build_network

    keys = shipped_keys()
    makers = {
        "network": lambda tmp: {**build_network(SHIPPED_MODEL, tmp), "source": DEFAULT_MODEL_NAME},
        "detector": build_detector,
    }
    done = {}
    for kind, make in makers.items():
        folder = cache.bundled_dir(kind)
        meta = cache.read_meta(folder)
        if not force and meta is not None and meta.get("key") == keys[kind]:
            log(f"{folder}: up to date (key {keys[kind][:16]}…)")
            done[kind] = False
            continue
        log(f"{folder}: building (key {keys[kind][:16]}…) …")
        build_entry(folder, lambda tmp, make=make, key=keys[kind]: {**make(tmp), "key": key}, replace=True)
        meta = cache.read_meta(folder)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in sorted(folder.glob("*.onnx")))
        log(f"{folder}: built ({sizes})")
        done[kind] = True
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bin/build-onnx", description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even the entries whose key is current")
    args = ap.parse_args(argv)
    from facelivenet.errors import FaceLiveNetError

    if not SHIPPED_MODEL.is_file():
        print(f"error: {SHIPPED_MODEL}: no such model file (run it in a checkout)", file=sys.stderr)
        return 2
    missing = exporter_missing()
    if missing:
        print(f"error: building the ONNX files needs {', '.join(missing)}: {EXPORT_EXTRA}", file=sys.stderr)
        return 2
    try:
        build_bundled(args.force, log=lambda m: print(m, file=sys.stderr))
    except FaceLiveNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
