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
from typing import Callable, Sequence

import numpy as np

from facelivenet.errors import FaceLiveNetError, InputError
from facelivenet.faces import IMAGE_EXTENSIONS
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

Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]
#: Output names of the exported face network, in the order runners return them.
NETWORK_OUTPUTS = ("embedding", "expression_probs")


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


def _write(serve, fmt: str, out: str | os.PathLike, calibration: Sequence[np.ndarray] | None = None) -> Path:
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


def export(network: FaceLiveNet, fmt: str, out: str | os.PathLike, *, calibration: np.ndarray | None = None) -> Path:
    """Export ``network`` in format ``fmt`` (one of :data:`FORMATS`) to ``out``.

    Args:
        calibration: (N, S, S, 3) uint8 real face crops (required for ``tflite-int8``).
    """
    _, serve = _serving_function(network)
    batches = None if calibration is None else [calibration[i : i + 1] for i in range(len(calibration))]
    return _write(serve, fmt, out, batches)


# --- running exported artefacts ------------------------------------------------------------


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
    exts = set(IMAGE_EXTENSIONS)
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



# --- the detector's three stages ---------------------------------------------------------

#: MTCNN stages: input side (None: any size) and output names, in runner order.
DETECTOR_STAGES: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "pnet": (None, ("offsets", "probabilities")),
    "rnet": (24, ("offsets", "probabilities")),
    "onet": (48, ("offsets", "landmarks", "probabilities")),
}
#: Detector parity bounds per format: (max |difference| of any output value, min share
#: of clear face/non-face decisions that agree, see :func:`decision_agreement`). Float
#: formats match to ~1e-6; int8 moves values by a few percent of their range.
DETECTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "savedmodel": (1e-4, 1.0),
    "tflite": (1e-4, 1.0),
    "onnx": (1e-4, 1.0),
    "tflite-int8": (float("inf"), 0.9),
}


@dataclass(frozen=True)
class StageParity:
    """Agreement of one exported detector stage with ours on the same inputs."""

    stage: str
    format: str
    inputs: int
    max_abs_diff: dict[str, float]
    decision_agreement: float
    bound_abs_diff: float
    bound_agreement: float

    @property
    def ok(self) -> bool:
        return (max(self.max_abs_diff.values()) <= self.bound_abs_diff
                and self.decision_agreement >= self.bound_agreement)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _stage_serving(stage: str):
    """(keras model with the pretrained weights, tf.function ``serve(image uint8) -> dict``)."""
    import tensorflow as tf

    from facelivenet.detect.networks import load_network, normalize

    net = load_network(stage)
    side, names = DETECTOR_STAGES[stage]

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 3], tf.uint8, name="image")])
    def serve(image):
        return dict(zip(names, net(normalize(image), training=False)))

    return net, serve


def stage_inputs(stage: str, faces: np.ndarray) -> np.ndarray:
    """Real inputs for a stage from (N, S, S, 3) uint8 face crops. P-Net takes the crops
    as they are; R-Net and O-Net get the central 70% (about the face box the cascade
    hands them, without the crop's margin), resized to 24 and 48 px."""
    import cv2

    side, _ = DETECTOR_STAGES[stage]
    if side is None:
        return faces
    s = faces.shape[1]
    m = int(round(s * 0.15))
    return np.stack([cv2.resize(f[m : s - m, m : s - m], (side, side), interpolation=cv2.INTER_AREA)
                     for f in faces])


def decision_agreement(probs_ours: np.ndarray, probs_theirs: np.ndarray, margin: float = 0.1) -> float:
    """Share of face/non-face decisions that agree, over the inputs (or map cells) that
    our model decides clearly (face probability at least ``margin`` away from 0.5): a
    probability of 0.49 against 0.51 is noise, not disagreement. 1.0 when none qualify.

    Args:
        probs_ours, probs_theirs: (..., 2) softmax outputs (non-face, face).
    """
    p = probs_ours[..., 1].ravel()
    q = probs_theirs[..., 1].ravel()
    clear = np.abs(p - 0.5) >= margin
    if not clear.any():
        return 1.0
    return float(np.mean((p[clear] > 0.5) == (q[clear] > 0.5)))


def export_detector(fmt: str, out_dir: str | os.PathLike, *, faces: np.ndarray,
                    calibrate: bool = False) -> dict[str, tuple[Path, StageParity]]:
    """Export P-Net, R-Net and O-Net to ``out_dir/{pnet,rnet,onet}.<ext>`` and check each.

    Args:
        faces: (N, S, S, 3) uint8 real face crops: the parity inputs, and the int8
            calibration data when ``calibrate``.

    Returns:
        stage → (path, parity).
    """
    from keras import ops

    from facelivenet.detect.networks import normalize

    ext = {"savedmodel": "savedmodel", "tflite": "tflite", "tflite-int8": "int8.tflite", "onnx": "onnx"}[fmt]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for stage, (_, names) in DETECTOR_STAGES.items():
        net, serve = _stage_serving(stage)
        x = stage_inputs(stage, faces)
        calib = [x[i : i + 1] for i in range(len(x))] if calibrate else None
        path = _write(serve, fmt, out / f"{stage}.{ext}", calib)

        def ours(batch, net=net):
            return tuple(ops.convert_to_numpy(t) for t in net(normalize(batch), training=False))

        a, b = ours(x), load_runner(fmt, path, names)(x)
        probs_a, probs_b = a[-1], b[-1]
        bound_diff, bound_agree = DETECTOR_BOUNDS[fmt]
        parity = StageParity(
            stage=stage, format=fmt, inputs=int(len(x)),
            max_abs_diff={n: float(np.abs(u - v).max()) for n, u, v in zip(names, a, b)},
            decision_agreement=decision_agreement(probs_a, probs_b),
            bound_abs_diff=bound_diff, bound_agreement=bound_agree,
        )
        results[stage] = (path, parity)
    return results
