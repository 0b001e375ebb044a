"""Face detection (a Keras MTCNN with the pretrained weights) and face alignment.

    from facelivenet.detect import FaceDetector, align_face, pick_main_face
    detector = FaceDetector(min_face_size=20)
    faces = detector.detect(image)                  # list[Detection], best first
    face = pick_main_face(faces, image.shape)        # largest, most central
    crop = align_face(image, face, 160, mode="crop", margin=32)

Modules: ``mtcnn_nets`` (P/R/O-Net), ``weights`` (the mtcnn package's files), ``boxes``
(numpy box maths), ``compiled`` (compiled forwards), ``stages`` (the cascade),
``detector`` (the facade), ``align`` (crop and similarity alignment), ``batch_align``
(``facelivenet align``: a whole folder tree). Names are imported on first use, so
importing this package (or its numpy-only modules) does not import Keras.
"""

from __future__ import annotations

from facelivenet.lazy import lazy_getattr

_EXPORTS = {
    "ALIGN_MODES": "align",
    "TEMPLATE_112": "align",
    "align_face": "align",
    "crop_face": "align",
    "landmark_template": "align",
    "pick_main_face": "align",
    "similarity_align": "align",
    "LANDMARK_NAMES": "detector",
    "Detection": "detector",
    "FaceDetector": "detector",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
