"""The one-time export of a model's ONNX files, checked for parity (TensorFlow, once per model).

Both builds go through :mod:`facelivenet.export` (tf2onnx, opset 17) and its parity
checks on the real faces bundled with the package; an export outside the bounds is an
:class:`~facelivenet.export.ExportError` and nothing is cached. Entries are written to
a temporary folder beside their place and renamed into it, so two processes building
at once never see half an entry (the second rename simply loses).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from facelivenet.runtime.cache import write_meta

#: Side of the parity face crops given to the detector stages (``bench/export.py``'s).
DETECTOR_PARITY_SIDE = 160
#: Parity faces used per check (enough for every bound; bounds the build time).
PARITY_FACES = 64
#: What an export needs beyond the core install (the ``export`` extra): Keras's backend,
#: the converter, and ``onnx`` to rewrite the detector stages' input type.
EXPORTER_MODULES: tuple[str, ...] = ("tensorflow", "tf2onnx", "onnx")
#: How to get them.
EXPORT_EXTRA = "pip install '.[export]'"


def exporter_missing() -> list[str]:
    """The modules of :data:`EXPORTER_MODULES` that are not installed (found without importing them)."""
    return [m for m in EXPORTER_MODULES if importlib.util.find_spec(m) is None]


def build_entry(folder: Path, make: Callable[[Path], dict[str, Any]], *, tensorflow: bool = True,
                replace: bool = False) -> Path:
    """Run ``make(tmp_folder) -> meta`` and move the result to ``folder`` atomically.

    ``tensorflow``: ``make`` exports from Keras, so load the backend first. ``replace``:
    an existing ``folder`` is swapped for the new entry (it stays whole until the new one
    passed its parity check), and the entry is made world-readable (the package's
    entries, rebuilt in place by ``bin/build-onnx``); otherwise an existing entry wins.
    """
    if tensorflow:
        from facelivenet.backend import load_backend

        load_backend()  # TensorFlow, quietly (its C++ start-up lines would reach stderr)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    old = folder.parent / f".{folder.name}.old.{os.getpid()}"
    try:
        meta = make(tmp)
        write_meta(tmp, meta)
        if replace:
            for p in tmp.iterdir():
                p.chmod(0o644)
            tmp.chmod(0o755)
            if folder.exists():
                os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: keep its entry
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def build_network(model_path: Path, folder: Path) -> dict[str, Any]:
    """Export the face network of ``model_path`` to ``folder/network.onnx``; its metadata."""
    from facelivenet.api import load_model
    from facelivenet.auth.gallery import model_fingerprint
    from facelivenet.export import ExportError, check_parity, export, load_face_dir, load_runner
    from facelivenet.paths import parity_faces_dir

    model = load_model(model_path)
    path = export(model.network, "onnx", folder / "network.onnx")
    faces = load_face_dir(parity_faces_dir(), model.image_size, PARITY_FACES)

    def ours(x):
        a = model.analyze(x)
        return a.embeddings, a.expressions

    parity = check_parity("onnx", ours, load_runner("onnx", path), faces)
    if not parity.ok:
        raise ExportError(f"{model_path}: the ONNX network differs from the Keras model on real faces "
                          f"(min cosine {parity.min_cosine:.6f}, argmax agreement {parity.argmax_agreement:.3f})")
    return {"kind": "network", "source": str(model_path), "config": model.config.to_dict(),
            "fingerprint": model_fingerprint(model), "parity": parity.to_dict()}


def build_detector(folder: Path) -> dict[str, Any]:
    """Export P-Net, R-Net and O-Net to ``folder/{pnet,rnet,onet}.onnx`` with float inputs."""
    from facelivenet.export import ExportError, export_detector, load_face_dir
    from facelivenet.paths import parity_faces_dir

    faces = load_face_dir(parity_faces_dir(), DETECTOR_PARITY_SIDE, PARITY_FACES)
    results = export_detector("onnx", folder, faces=faces)
    bad = [f"{s} (max |diff| {max(p.max_abs_diff.values()):.2e})" for s, (_, p) in results.items() if not p.ok]
    if bad:
        raise ExportError(f"the ONNX detector stages differ from the Keras ones on real faces: {', '.join(bad)}")
    for _, (path, _) in results.items():
        float_input(path)
    return {"kind": "detector", "parity": {s: p.to_dict() for s, (_, p) in results.items()}}


def float_input(path: Path) -> None:
    """Make an exported stage take float32 pixels instead of uint8.

    The cascade feeds P-Net area-resized and R-/O-Net bilinear-sampled pixels, which
    are not integers (the Keras path never rounds them). The export's graph starts with
    a Cast of the uint8 input to float; on a float input that Cast is the identity, so
    changing the declared input type is the whole change.
    """
    import onnx

    from facelivenet.export import ExportError

    model = onnx.load(str(path))
    (inp,) = model.graph.input
    users = [n for n in model.graph.node if inp.name in n.input]
    to_float = onnx.TensorProto.FLOAT
    def casts_to_float(node) -> bool:
        to = [a for a in node.attribute if a.name == "to"]
        return node.op_type == "Cast" and bool(to) and onnx.helper.get_attribute_value(to[0]) == to_float

    if not users or not all(casts_to_float(n) for n in users):
        raise ExportError(f"{path}: the exported stage does not start with a Cast to float; cannot feed it floats")
    inp.type.tensor_type.elem_type = to_float
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
