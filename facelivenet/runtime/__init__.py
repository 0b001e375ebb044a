"""Inference on ONNX Runtime: the MTCNN stages and the face network without TensorFlow.

    from facelivenet.runtime import inference_backend
    backend = inference_backend()                    # the default runtime, auto: ONNX Runtime
    faces = backend.detect(rgb)                      # list[Detection]
    analysis = backend.embed_and_classify(crops)     # embeddings + expression probabilities

The ONNX files are exported from our Keras models by :mod:`facelivenet.export` (with
its parity checks on real faces). Those of the default model's network and of the
MTCNN stages ship in the package (``facelivenet/_bundled/onnx``, rebuilt by
``bin/build-onnx``: :mod:`~facelivenet.runtime.bundle`); another model's are exported
the first time it is used and cached under the user cache dir (:func:`cache_root`),
keyed by the SHA-256 of the model file: later runs load them without importing
TensorFlow. Training, calibration and export stay on Keras.

Modules: ``cache`` (where the files live, the key, the metadata; no TensorFlow),
``build`` (the one-time export and parity check; TensorFlow), ``bundle`` (rebuilds
the package's own files), ``detector`` (the cascade on ONNX Runtime), ``network`` (the
face network on ONNX Runtime), ``inference`` (the seam the facade, the face path and the
frame analyser use), ``tracking`` (follow a face between full detections), ``quantize``
(``precision="int8"``: the network quantised once from its float ONNX file, no
TensorFlow). Names are imported on first use.
"""

from __future__ import annotations

from facelivenet.lazy import lazy_getattr

_EXPORTS = {
    "RUNTIMES": "inference",
    "InferenceBackend": "inference",
    "inference_backend": "inference",
    "cache_root": "cache",
    "file_digest": "cache",
    "OnnxFaceDetector": "detector",
    "OnnxFaceModel": "network",
    "load_onnx_model": "network",
    "TrackingDetector": "tracking",
    "PRECISIONS": "quantize",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
