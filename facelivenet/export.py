"""Export of the two-branch network for phones and serving (TensorFlow-only module).

Formats (all take a (N, S, S, 3) uint8 RGB batch named ``image`` and give two named
outputs, ``embedding`` (N, D) and ``expression_probs`` (N, C)):

- ``savedmodel``: a TensorFlow SavedModel directory, signature ``serving_default``.
- ``tflite``: float32 TensorFlow Lite flatbuffer, signature ``serving_default``.
- ``tflite-int8``: post-training quantisation with a representative dataset of real
  face crops: int8 weights and activations wherever TFLite has an int8 kernel (float
  fallback elsewhere: the softmax and L2-normalisation tails), uint8 input as above.
- ``onnx``: ONNX (opset 17) converted with tf2onnx, the converter Keras itself uses
  for ``Model.export(format="onnx")`` on the TensorFlow backend; run with onnxruntime.

After writing, :func:`check_parity` runs the exported artefact and our Keras model on
the same real face crops and compares them (:data:`PARITY_BOUNDS`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facelivenet.errors import FaceLiveNetError, InputError
from facelivenet.models.compiled import inference_model
from facelivenet.models.network import FaceLiveNet
from facelivenet.utils import atomic_path

FORMATS = ("savedmodel", "tflite", "tflite-int8", "onnx")
SIGNATURE = "serving_default"

#: Bounds an export must meet on real faces, per format: (min cosine similarity of
#: each face's embedding to ours, min share of faces whose expression argmax agrees).
#: Float formats differ from Keras only by operation order (measured: max |Δ| ~1e-6,
#: cosine 1 - 1e-12), so anything below 0.9999 is a conversion bug. int8 carries ~1/256
#: relative error per layer through ~40 layers; a cosine of 0.98 moves the squared L2
#: distance between two unit embeddings by at most 2(1 - 0.98) = 0.04, a few percent of a
#: verification threshold near 1, and we ask that 90% of expression argmaxes agree.
PARITY_BOUNDS: dict[str, tuple[float, float]] = {
    "savedmodel": (0.9999, 1.0),
    "tflite": (0.9999, 1.0),
    "onnx": (0.9999, 1.0),
    "tflite-int8": (0.98, 0.9),
}

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class ExportError(FaceLiveNetError):
    """An export failed, or the exported model does not match ours within bounds."""


@dataclass(frozen=True)
class Parity:
    """Agreement of an exported model with the Keras model on the same faces."""

    format: str
    faces: int
    max_abs_embedding_diff: float
    min_cosine: float
    mean_cosine: float
    argmax_agreement: float
    max_abs_probability_diff: float
    bound_cosine: float
    bound_agreement: float

    @property
    def ok(self) -> bool:
        return self.min_cosine >= self.bound_cosine and self.argmax_agreement >= self.bound_agreement

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _serving_function(network: FaceLiveNet):
    """(inference model, tf.function ``serve(image) -> {embedding, expression_probs}``)."""
    import tensorflow as tf

    infer = inference_model(network)
    size = network.network_config.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="image")])
    def serve(image):
        embedding, probs = infer(image, training=False)
        return {"embedding": embedding, "expression_probs": probs}

    return infer, serve


def export_savedmodel(network: FaceLiveNet, out_dir: str | os.PathLike) -> Path:
    """Write a SavedModel directory (replaced atomically if it exists)."""
    import keras

    out = Path(out_dir)
    _, serve = _serving_function(network)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    archive = keras.export.ExportArchive()
    # add_endpoint tracks the variables the function uses; tracking the model as well
    # would store every weight twice.
    archive.add_endpoint(SIGNATURE, serve)
    try:
        archive.write_out(str(tmp), verbose=False)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def export_tflite(
    network: FaceLiveNet, out_path: str | os.PathLike, *, calibration: np.ndarray | None = None
) -> Path:
    """Write a TFLite flatbuffer; int8-quantised when ``calibration`` faces are given.

    Args:
        calibration: (N, S, S, 3) uint8 real face crops for the representative dataset.
    """
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        sm = export_savedmodel(network, Path(tmp) / "sm")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=[SIGNATURE])
        if calibration is not None:
            if len(calibration) == 0:
                raise InputError("int8 calibration needs at least one face crop")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffer = converter.convert()
    with atomic_path(out_path) as tmp_path:
        tmp_path.write_bytes(flatbuffer)
    return Path(out_path)


def export_onnx(network: FaceLiveNet, out_path: str | os.PathLike, opset: int = 17) -> Path:
    """Write an ONNX model with tf2onnx (``pip install facelivenet[export]``)."""
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs tf2onnx and onnxruntime: pip install -e '.[export]'") from None
    _, serve = _serving_function(network)
    with atomic_path(out_path) as tmp_path:
        tf2onnx.convert.from_function(
            serve, input_signature=serve.input_signature, opset=opset, output_path=str(tmp_path)
        )
    return Path(out_path)


def export(network: FaceLiveNet, fmt: str, out: str | os.PathLike, *, calibration: np.ndarray | None = None) -> Path:
    """Export ``network`` in format ``fmt`` (one of :data:`FORMATS`) to ``out``."""
    if fmt == "savedmodel":
        return export_savedmodel(network, out)
    if fmt == "tflite":
        return export_tflite(network, out)
    if fmt == "tflite-int8":
        if calibration is None:
            raise InputError("tflite-int8 needs real face crops for calibration (--calibration DIR)")
        return export_tflite(network, out, calibration=calibration)
    if fmt == "onnx":
        return export_onnx(network, out)
    raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


# --- running exported artefacts ------------------------------------------------------------


def load_runner(fmt: str, path: str | os.PathLike) -> Runner:
    """A function ``faces -> (embeddings, probabilities)`` running an exported artefact."""
    if fmt == "savedmodel":
        import tensorflow as tf

        fn = tf.saved_model.load(str(path)).signatures[SIGNATURE]

        def run_sm(x):
            out = fn(image=tf.constant(x, tf.uint8))
            return out["embedding"].numpy(), out["expression_probs"].numpy()

        return run_sm
    if fmt in ("tflite", "tflite-int8"):
        return _tflite_runner(path)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_onnx(x):
            emb, probs = sess.run(["embedding", "expression_probs"], {"image": x})
            return emb, probs

        return run_onnx
    raise InputError(f"unknown export format {fmt!r}")


def _tflite_runner(path) -> Runner:
    try:  # LiteRT is the maintained interpreter; tf.lite.Interpreter is deprecated.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=str(path))
    runner = interp.get_signature_runner(SIGNATURE)

    def run_tflite(x):
        # The flatbuffer is traced for one batch shape at a time; run face by face
        # (what a phone does) to keep one allocation.
        embs, probs = [], []
        for face in x:
            out = runner(image=face[None])
            embs.append(out["embedding"])
            probs.append(out["expression_probs"])
        return np.concatenate(embs), np.concatenate(probs)

    return run_tflite


def check_parity(fmt: str, ours: Runner, theirs: Runner, faces: np.ndarray) -> Parity:
    """Compare two runners on the same (N, S, S, 3) uint8 faces."""
    e0, p0 = ours(faces)
    e1, p1 = theirs(faces)
    e0, e1 = np.asarray(e0, np.float64), np.asarray(e1, np.float64)
    cos = np.sum(e0 * e1, axis=1) / (np.linalg.norm(e0, axis=1) * np.linalg.norm(e1, axis=1) + 1e-12)
    bound_cos, bound_agree = PARITY_BOUNDS[fmt]
    return Parity(
        format=fmt,
        faces=int(len(faces)),
        max_abs_embedding_diff=float(np.abs(e0 - e1).max()),
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        argmax_agreement=float(np.mean(np.argmax(p0, 1) == np.argmax(p1, 1))),
        max_abs_probability_diff=float(np.abs(np.asarray(p0) - np.asarray(p1)).max()),
        bound_cosine=bound_cos,
        bound_agreement=bound_agree,
    )


def artefact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def load_face_dir(folder: str | os.PathLike, size: int, limit: int | None = None) -> np.ndarray:
    """Read every image under ``folder`` (recursively) as (N, size, size, 3) uint8 crops.

    Unreadable files are skipped; a folder without any readable image is an error.
    """
    from facelivenet.errors import ImageReadError
    from facelivenet.images import read_image
    from facelivenet.preprocess import prepare_faces

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory of face crops")
    exts = {".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".webp", ".tif", ".tiff"}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts)
    faces = []
    for p in files:
        if limit is not None and len(faces) >= limit:
            break
        try:
            faces.append(read_image(p))
        except ImageReadError:
            continue
    if not faces:
        raise InputError(f"{root}: no readable face images")
    return prepare_faces(faces, size)

