"""Face detection (a Keras MTCNN with the pretrained weights) and face alignment.

    from facelivenet.detect import FaceDetector, align_face, pick_main_face
    detector = FaceDetector(min_face_size=20)
    faces = detector.detect(image)                  # list[Detection], best first
    face = pick_main_face(faces, image.shape)        # largest, most central
    crop = align_face(image, face, 160, mode="crop", margin=32)

Modules: ``networks`` (P/R/O-Net), ``weights`` (the mtcnn package's files), ``boxes``
(numpy box maths), ``compiled`` (compiled forwards), ``stages`` (the cascade),
``detector`` (the facade), ``align`` (crop and similarity alignment).
"""

from facelivenet.detect.align import (
    ALIGN_MODES,
    TEMPLATE_112,
    align_face,
    crop_face,
    landmark_template,
    pick_main_face,
    similarity_align,
)
from facelivenet.detect.detector import LANDMARK_NAMES, Detection, FaceDetector

__all__ = [
    "ALIGN_MODES",
    "LANDMARK_NAMES",
    "TEMPLATE_112",
    "Detection",
    "FaceDetector",
    "align_face",
    "crop_face",
    "landmark_template",
    "pick_main_face",
    "similarity_align",
]
