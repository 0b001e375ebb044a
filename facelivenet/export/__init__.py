"""Export for phones and serving: the face network and the detector's stages, checked for parity.

    from facelivenet.export import export, load_runner, check_parity, load_face_dir
    export(model.network, "tflite-int8", "model.tflite", calibration=crops)
    parity = check_parity("tflite-int8", ours, load_runner("tflite-int8", "model.tflite"), faces)

Modules: ``formats`` (SavedModel, TFLite float and int8, ONNX: writing a serving
function and running the artefact), ``network`` (the two-branch face network),
``detector`` (P-Net, R-Net, O-Net), ``parity`` (bounds and comparisons on real faces;
numpy only). TensorFlow is imported only by ``formats``, ``network`` and ``detector``,
and names are imported on first use, so ``from facelivenet.export import ExportError``
or the parity checks do not import it.
"""

from __future__ import annotations

from facelivenet.lazy import lazy_getattr

from facelivenet.errors import ExportError

_EXPORTS = {
    "FORMATS": "formats",
    "NETWORK_OUTPUTS": "formats",
    "SIGNATURE": "formats",
    "Runner": "formats",
    "artefact_size": "formats",
    "load_runner": "formats",
    "write_artefact": "formats",
    "export": "network",
    "DETECTOR_STAGES": "detector",
    "export_detector": "detector",
    "stage_inputs": "detector",
    "DETECTOR_BOUNDS": "parity",
    "PARITY_BOUNDS": "parity",
    "Parity": "parity",
    "StageParity": "parity",
    "check_parity": "parity",
    "decision_agreement": "parity",
    "load_face_dir": "parity",
}

__all__ = sorted([*_EXPORTS, "ExportError"])


__getattr__ = lazy_getattr(__name__, _EXPORTS)
