"""The artefact formats: writing a serving function to disk, and running what was written.

Every format takes a uint8 RGB batch named ``image`` and gives named outputs:

- ``savedmodel``: a TensorFlow SavedModel directory, signature ``serving_default``.
- ``tflite``: float32 TensorFlow Lite flatbuffer, signature ``serving_default``.
- ``tflite-int8``: post-training quantisation with a representative dataset of real
  inputs: int8 weights and activations wherever TFLite has an int8 kernel (float
  fallback elsewhere), uint8 input as above.
- ``onnx``: ONNX (opset 17) converted with tf2onnx, the converter Keras itself uses
  for ``Model.export(format="onnx")`` on the TensorFlow backend; run with onnxruntime.

TensorFlow, tf2onnx, onnxruntime and LiteRT are imported inside the functions that use
them. The face network (:mod:`.network`) and the detector's stages (:mod:`.detector`)
both go through :func:`write_artefact` and :func:`load_runner`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facelivenet.errors import ExportError, InputError
from facelivenet.utils import atomic_path

FORMATS = ("savedmodel", "tflite", "tflite-int8", "onnx")
SIGNATURE = "serving_default"

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]
#: Output names of the exported face network, in the order runners return them.
NETWORK_OUTPUTS = ("embedding", "expression_probs")


def _write_savedmodel(serve, out_dir: str | os.PathLike) -> Path:
    """Write the tf.function ``serve`` as a SavedModel directory (replaced atomically)."""
    import keras

    out = Path(out_dir)
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


def _write_tflite(serve, out_path: str | os.PathLike, calibration: Sequence[np.ndarray] | None = None) -> Path:
    """Write ``serve`` as a TFLite flatbuffer; int8-quantised when ``calibration`` is given.

    Args:
        calibration: uint8 input batches (each (1, ...) like the signature's input) for
            the representative dataset.
    """
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        sm = _write_savedmodel(serve, Path(tmp) / "sm")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=[SIGNATURE])
        if calibration is not None:
            if len(calibration) == 0:
                raise InputError("int8 calibration needs at least one face crop")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([x] for x in calibration)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffer = converter.convert()
    with atomic_path(out_path) as tmp_path:
        tmp_path.write_bytes(flatbuffer)
    return Path(out_path)


def _write_onnx(serve, out_path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``serve`` as ONNX with tf2onnx (``pip install facelivenet[export]``)."""
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs tf2onnx and onnxruntime: pip install -e '.[export]'") from None
    with atomic_path(out_path) as tmp_path:
        tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset,
                                      output_path=str(tmp_path))
    return Path(out_path)


def write_artefact(serve, fmt: str, out: str | os.PathLike,
                   calibration: Sequence[np.ndarray] | None = None) -> Path:
    """Write the tf.function ``serve`` in format ``fmt`` (one of :data:`FORMATS`) to ``out``.

    Args:
        calibration: uint8 input batches for ``tflite-int8`` (required there, unused elsewhere).
    """
    if fmt == "savedmodel":
        return _write_savedmodel(serve, out)
    if fmt == "tflite":
        return _write_tflite(serve, out)
    if fmt == "tflite-int8":
        if calibration is None:
            raise InputError("tflite-int8 needs real face crops for calibration (--calibration DIR)")
        return _write_tflite(serve, out, calibration)
    if fmt == "onnx":
        return _write_onnx(serve, out)
    raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def artefact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def load_runner(fmt: str, path: str | os.PathLike, outputs: Sequence[str] = NETWORK_OUTPUTS) -> Runner:
    """A function ``inputs -> tuple of named outputs`` running an exported artefact.

    ``outputs`` names the outputs to return, in order (default: the face network's).
    """
    outputs = tuple(outputs)
    if fmt == "savedmodel":
        import tensorflow as tf

        fn = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        (input_name,) = fn.structured_input_signature[1].keys()

        def run_sm(x):
            out = fn(**{input_name: tf.constant(x, tf.uint8)})
            return tuple(out[k].numpy() for k in outputs)

        return run_sm
    if fmt in ("tflite", "tflite-int8"):
        return _tflite_runner(path, outputs)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = sess.get_inputs()[0].name

        def run_onnx(x):
            return tuple(sess.run(list(outputs), {input_name: x}))

        return run_onnx
    raise InputError(f"unknown export format {fmt!r}")


def _tflite_runner(path, outputs: tuple[str, ...]) -> Runner:
    try:  # LiteRT is the maintained interpreter; tf.lite.Interpreter is deprecated.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=str(path))
    runner = interp.get_signature_runner(SIGNATURE)
    (input_name,) = runner.get_input_details().keys()

    def run_tflite(x):
        # Run item by item (what a phone does): one allocation per input shape.
        parts = [runner(**{input_name: item[None]}) for item in x]
        return tuple(np.concatenate([p[k] for p in parts]) for k in outputs)

    return run_tflite
