"""int8 on request: the face network quantised with ONNX Runtime, built once from its float ONNX file.

``FaceAuth(runtime="onnx", precision="int8")`` and ``--precision int8`` run the
network on :func:`quantize_network`'s file; the detector stays float (its three small
stages are not the cost on a face, and its decisions decide which faces exist).

The recipe (:data:`RECIPE`), chosen by measuring every variant of
``onnxruntime.quantization`` on this model (see the README's "Runtimes"):

- **static** QDQ: weights *and* activations int8, ranges calibrated (min/max) on the
  real faces bundled with the package (``data/parity-faces``), their mirror images
  and photometric and geometric variants of both (:func:`photometric_variants`). Dynamic quantisation is as accurate but 2-5x *slower* than float here
  (ONNX Runtime's ConvInteger re-measures every activation per call).
- **per-channel** int8 weights with **reduce_range** (7-bit weights): on x86 CPUs
  without VNNI (AVX2 only, like this machine) the u8 x s8 kernels add products in
  16 bits and saturate with full 8-bit weights; measured here that cost a cosine of
  0.89 to the float embeddings, against 0.999 with 7-bit weights.

The quantised file is checked against the float ONNX network on the parity faces
with the export's int8 bounds (:data:`facelivenet.export.parity.PARITY_BOUNDS`,
``onnx-int8``, the same as ``tflite-int8``'s); outside them the build is an
:class:`~facelivenet.errors.ExportError` and nothing is cached. No TensorFlow: the
float ONNX file (cached or shipped) is all it reads.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facelivenet.errors import ExportError, InputError

#: Precisions of the network on ONNX Runtime: float32 (the export) and int8 (this module).
PRECISIONS: tuple[str, ...] = ("fp32", "int8")
DEFAULT_PRECISION = "fp32"
#: The quantisation settings; part of the cache key, so a new recipe builds a new entry.
RECIPE = {"format": "QDQ", "activations": "QUInt8", "weights": "QInt8", "per_channel": True,
          "reduce_range": True, "calibration": "MinMax, parity faces, mirrored, photometric variants", "version": 1}
#: Name of the parity format (its bounds in :data:`facelivenet.export.parity.PARITY_BOUNDS`).
PARITY_FORMAT = "onnx-int8"


def check_precision(precision: str | None, runtime: str) -> str:
    """``precision`` checked against the (already checked) ``runtime`` (None: fp32).

    int8 exists only on ONNX Runtime: asking for it on ``keras`` is an
    :class:`~facelivenet.errors.InputError`, not a silent float run.
    """
    precision = DEFAULT_PRECISION if precision is None else precision
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {list(PRECISIONS)}. Received: {precision!r}")
    if precision != DEFAULT_PRECISION and runtime == "keras":
        raise InputError(f"precision {precision} runs on ONNX Runtime only; use runtime onnx (--runtime onnx)")
    return precision


def int8_key(float_onnx: Path) -> str:
    """Cache key of the int8 twin of ``float_onnx``: its bytes, the precision and :data:`RECIPE`."""
    from facelivenet.runtime.cache import file_digest

    tag = f"int8:{sorted(RECIPE.items())}:{file_digest([float_onnx])}"
    return hashlib.sha256(tag.encode("utf-8")).hexdigest()


def calibration_faces(size: int, limit: int) -> np.ndarray:
    """(N, size, size, 3) uint8: the bundled parity faces, mirrored, each under :func:`photometric_variants`."""
    from facelivenet.export.parity import load_face_dir
    from facelivenet.paths import parity_faces_dir

    faces = load_face_dir(parity_faces_dir(), size, limit)
    both = np.concatenate([faces, np.ascontiguousarray(faces[:, :, ::-1])])
    return np.concatenate([both, *photometric_variants(both)])


def photometric_variants(faces: np.ndarray) -> list[np.ndarray]:
    """The faces darker, brighter, flatter, harsher, grey, gamma-bent, rotated and zoomed.

    The bundled faces are 8 shots of one person: min/max ranges taken on them alone
    clip the activations of other faces (measured on 398 LFW faces: int8 vs float
    cosine mean 0.9950, min 0.976). These variants widen the ranges the way the world
    does (mean 0.9986, min 0.987; calibrating on 198 other LFW faces gives 0.9989).
    """
    import cv2

    x = faces.astype(np.float32)
    side = faces.shape[1]
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    out = [x * a for a in (0.4, 0.6, 1.4, 1.8)]
    out += [(x - mean) * c + mean for c in (0.6, 1.5)]
    out += [np.repeat(grey[..., None], 3, axis=-1)]
    out += [255.0 * (x / 255.0) ** g for g in (0.6, 1.6)]
    for angle, scale in ((-15, 1.1), (15, 1.1), (0, 0.85), (0, 1.25)):
        m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
        out.append(np.stack([cv2.warpAffine(f, m, (side, side), borderMode=cv2.BORDER_REFLECT) for f in faces]))
    return [np.clip(o, 0, 255).astype(np.uint8) for o in out]


def quantize_network(float_onnx: Path, out: Path, calibration: np.ndarray) -> Path:
    """Write the int8 (:data:`RECIPE`) twin of the float network ``float_onnx`` to ``out``.

    Args:
        calibration: (N, S, S, 3) uint8 face crops whose activations set the ranges.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        from facelivenet.runtime.build import EXPORT_EXTRA

        raise ExportError(f"quantising the network to int8 needs the onnx package: {EXPORT_EXTRA}") from None

    class Faces(CalibrationDataReader):
        def __init__(self, name: str):
            self._items = iter([{name: calibration[i : i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self._items, None)

    import onnx

    name = onnx.load(str(float_onnx), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and graph clean-up first, as onnxruntime.quantization asks.
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Faces(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return out


def build_int8_network(float_folder: Path, float_meta: dict[str, Any], folder: Path, *,
                       faces: int = 64) -> dict[str, Any]:
    """Quantise ``float_folder/network.onnx`` into ``folder/network.onnx``; its metadata.

    The parity check compares the int8 file with the float one (itself within 0.9999
    of the Keras model) on the bundled parity faces.

    Raises:
        ExportError: the int8 network is outside the int8 parity bounds.
    """
    from facelivenet.config import NetworkConfig
    from facelivenet.export.formats import load_runner
    from facelivenet.export.parity import check_parity, load_face_dir
    from facelivenet.paths import parity_faces_dir

    float_onnx = float_folder / "network.onnx"
    size = NetworkConfig.from_dict(float_meta["config"]).image_size
    path = quantize_network(float_onnx, folder / "network.onnx", calibration_faces(size, faces))
    parity = check_parity(PARITY_FORMAT, load_runner("onnx", float_onnx), load_runner("onnx", path),
                          load_face_dir(parity_faces_dir(), size, faces))
    if not parity.ok:
        raise ExportError(
            f"{float_onnx}: the int8 network differs from the float one on real faces (min cosine "
            f"{parity.min_cosine:.4f} < {parity.bound_cosine} or argmax agreement {parity.argmax_agreement:.3f} "
            f"< {parity.bound_agreement}); nothing cached")
    keep = {k: v for k, v in float_meta.items() if k not in ("parity", "kind")}
    return {**keep, "kind": "network-int8", "precision": "int8", "float": str(float_onnx),
            "recipe": RECIPE, "parity": parity.to_dict()}
