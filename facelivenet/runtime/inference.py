"""The inference seam: one object that detects faces and runs the network, on Keras or ONNX Runtime.

:class:`~facelivenet.facade.FaceAuth`, the CLI commands and the frame analyser get
their detector and model from :func:`inference_backend` and never branch on the
runtime themselves: both runtimes' objects answer the same calls
(``detector.detect(image)``, ``model.analyze(crops)``, ``model.config``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelivenet.errors import InputError, ModelLoadError
from facelivenet.runtime import cache
from facelivenet.runtime.build import EXPORT_EXTRA, exporter_missing

#: The inference runtimes: ``auto`` (ONNX Runtime when it can, else Keras), ``keras``
#: (TensorFlow) and ``onnx`` (ONNX Runtime).
RUNTIMES: tuple[str, ...] = ("auto", "keras", "onnx")
#: The runtime used when none is named. ``auto`` runs on ONNX Runtime (no TensorFlow
#: import; the default model's and the detector's ONNX files ship in the package), and on
#: Keras, with one warning, only when a model has no ONNX files and they cannot be built
#: here: the attack suite and the genuine clips get the same decisions on both (README).
DEFAULT_RUNTIME = "auto"


class OnnxFilesMissing(ModelLoadError):
    """No ONNX files for a model (none shipped, none cached) and no exporter to build them."""


@dataclass(frozen=True)
class InferenceBackend:
    """A detector and a face network on one runtime.

    Attributes:
        runtime: one of :data:`RUNTIMES`.
        precision: the network's, ``fp32`` or ``int8`` (ONNX Runtime only; see
            :mod:`facelivenet.runtime.quantize`).
        model: :class:`facelivenet.api.FaceModel` or :class:`~facelivenet.runtime.OnnxFaceModel`.
        detector: :class:`facelivenet.detect.FaceDetector` or its ONNX twin.
    """

    runtime: str
    model: Any
    detector: Any
    precision: str = "fp32"

    def detect(self, image) -> list:
        """Faces of one RGB image, best first (:class:`facelivenet.detect.Detection`)."""
        return self.detector.detect(image)

    def embed_and_classify(self, crops):
        """:class:`facelivenet.api.Analysis` of aligned face crops (one batched call)."""
        return self.model.analyze(crops)


def check_runtime(runtime: str | None) -> str:
    """``runtime`` checked (None: :data:`DEFAULT_RUNTIME`)."""
    runtime = DEFAULT_RUNTIME if runtime is None else runtime
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {list(RUNTIMES)}. Received: {runtime!r}")
    return runtime


def inference_backend(runtime: str | None = None, model: Any = None, detector: Any = None, *,
                      precision: str | None = None) -> InferenceBackend:
    """The detector and network of ``model`` (a path, a loaded model or None for the default).

    On ``onnx`` a loaded Keras :class:`~facelivenet.api.FaceModel` is replaced by the ONNX
    twin of the file it was loaded from; the ONNX files are the package's (the default
    model), the user cache's, or built there on first use (TensorFlow, once). ``auto`` is
    ``onnx``, except for a model already loaded on Keras (kept there) and for a model
    whose ONNX files are missing and cannot be built (no ``export`` extra): Keras, with
    one warning that says why. ``precision`` (None: fp32) ``int8`` runs the quantised
    network: ONNX Runtime only, so ``auto`` means ``onnx`` (no fallback) and ``keras`` is
    an :class:`~facelivenet.errors.InputError`.
    """
    from facelivenet.runtime.quantize import DEFAULT_PRECISION, check_precision

    runtime = check_runtime(runtime)
    precision = check_precision(precision, runtime)
    if runtime == "auto" and precision != DEFAULT_PRECISION:
        runtime = "onnx"  # int8 exists only there: no silent float fallback
    if runtime == "auto":
        if model is not None and hasattr(model, "analyze") and getattr(model, "runtime", "keras") == "keras":
            runtime = "keras"
        else:
            try:
                return _onnx_backend(model, detector)
            except OnnxFilesMissing as exc:
                warnings.warn(f"{exc}; running on keras (TensorFlow) instead", RuntimeWarning, stacklevel=2)
                runtime = "keras"
    if runtime == "keras":
        from facelivenet.backend import load_backend

        load_backend()  # Keras, without TensorFlow's C++ start-up lines on stderr
        from facelivenet.api import FaceModel, load_model

        if getattr(model, "runtime", "keras") != "keras":
            raise InputError("a model loaded on the onnx runtime cannot run on keras; pass its file instead")
        loaded = model if isinstance(model, FaceModel) else load_model(model)
        if detector is None:
            from facelivenet.detect import FaceDetector

            detector = FaceDetector()
        return InferenceBackend(runtime, loaded, detector)
    return _onnx_backend(model, detector, precision)


def _onnx_backend(model: Any, detector: Any, precision: str = "fp32") -> InferenceBackend:
    """The ONNX Runtime backend; files missing and no exporter -> :class:`OnnxFilesMissing`."""
    from facelivenet.runtime.detector import OnnxFaceDetector
    from facelivenet.runtime.network import OnnxFaceModel, load_onnx_model

    if detector is None:  # found first: it is cheaper to find, and the network's session costs
        detector = OnnxFaceDetector(detector_folder())
    if isinstance(model, OnnxFaceModel) and model.precision == precision:
        loaded = model
    elif hasattr(model, "network") or isinstance(model, OnnxFaceModel):  # a loaded model: its file
        if getattr(model, "source", None) is None:
            raise InputError("the onnx runtime needs the model's file; this model was not loaded from one")
        loaded = load_onnx_model(model.source, precision=precision)
    else:
        loaded = load_onnx_model(model, precision=precision)
    return InferenceBackend("onnx", loaded, detector, precision)


def _missing(what: str, folder: Path) -> OnnxFilesMissing:
    message = f"{what}: no ONNX files shipped or cached (in {folder})"
    missing = exporter_missing()
    if missing:
        message += f", and building them needs {', '.join(missing)}: {EXPORT_EXTRA}"
    return OnnxFilesMissing(message)


def network_entry(source: Path, *, build: bool = True, precision: str = "fp32") -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of the ONNX network of the model file ``source``: the package's
    entry when it was built from these bytes, else the user cache's, else built there
    when ``build`` (else :class:`OnnxFilesMissing`).

    ``precision="int8"``: the quantised twin of the float entry (its own kind and key,
    see :func:`int8_network_entry`).
    """
    if precision == "int8":
        return int8_network_entry(source, build=build)
    key = cache.file_digest([source])
    folder = cache.find_entry("network", key)
    if folder is None:
        folder = cache.entry_dir("network", key)
        if not build or exporter_missing():
            raise _missing(str(source), folder)
        from facelivenet.runtime.build import build_entry, build_network

        build_entry(folder, lambda tmp: {**build_network(source, tmp), "key": key})
    return folder, cache.read_meta(folder)


def int8_network_entry(source: Path, *, build: bool = True) -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of the int8 network of the model file ``source``, built when missing.

    Kind ``network-int8``, keyed by the float ONNX file's bytes and the quantisation
    recipe (:func:`facelivenet.runtime.quantize.int8_key`); built from the float entry
    (itself built first when missing) without TensorFlow, checked with the int8 parity
    bounds.
    """
    from facelivenet.runtime.quantize import int8_key

    float_folder, float_meta = network_entry(source, build=build)
    folder = cache.entry_dir("network-int8", int8_key(float_folder / "network.onnx"))
    meta = cache.read_meta(folder)
    if meta is None:
        if not build:
            raise ModelLoadError(f"{source}: no int8 ONNX network cached in {folder}")
        from facelivenet.runtime.build import build_entry
        from facelivenet.runtime.quantize import build_int8_network

        build_entry(folder, lambda tmp: build_int8_network(float_folder, float_meta, tmp), tensorflow=False)
        meta = cache.read_meta(folder)
    return folder, meta


def detector_folder(*, build: bool = True) -> Path:
    """The folder of the ONNX P-/R-/O-Net of the installed MTCNN weights (the package's,
    else the user cache's, else built there when ``build``; else :class:`OnnxFilesMissing`)."""
    from facelivenet.detect.weights import NETWORKS, weights_path

    paths = [weights_path(n) for n in NETWORKS]
    key = cache.file_digest(paths)
    folder = cache.find_entry("detector", key)
    if folder is None:
        folder = cache.entry_dir("detector", key)
        if not build or exporter_missing():
            raise _missing(f"the MTCNN detector ({paths[0].parent})", folder)
        from facelivenet.runtime.build import build_detector, build_entry

        build_entry(folder, lambda tmp: {**build_detector(tmp), "key": key})
    return folder
