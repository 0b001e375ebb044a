"""Face alignment: facenet's box-and-margin crop, or a 5-point similarity transform.

:func:`align_face` picks one by name (``NetworkConfig.alignment``):

* ``"crop"`` (facenet, facenet-pytorch): the detection box grown by a margin, clipped
  to the image, resized to ``image_size`` x ``image_size``. The margin is given in
  pixels of the *output* (facenet-pytorch's convention): ``margin=32`` at 160 px means
  the face box fills the middle 128 px of each side, whatever the face's size.
* ``"similarity"`` (ArcFace / insightface): rotation + uniform scale + translation that
  best maps the five landmarks onto :data:`TEMPLATE_112` scaled to ``image_size``
  (OpenCV ``estimateAffinePartial2D`` + ``warpAffine``).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from facelivenet.errors import AlignmentError, InputError

ALIGN_MODES: tuple[str, ...] = ("crop", "similarity")

#: The canonical 5-point template of ArcFace / insightface for 112 x 112 faces, in
#: :data:`facelivenet.detect.LANDMARK_NAMES` order (left eye, right eye, nose,
#: mouth left, mouth right, left/right as seen in the image).
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def landmark_template(image_size: int) -> np.ndarray:
    """(5, 2) float32 template points for an ``image_size`` x ``image_size`` face."""
    return TEMPLATE_112 * (float(image_size) / 112.0)


def _check_size(image_size: int) -> int:
    if int(image_size) < 8:
        raise InputError(f"image_size must be >= 8 pixels. Received: image_size={image_size}")
    return int(image_size)


def crop_face(image: np.ndarray, box: Sequence[float], image_size: int = 160, margin: float = 32) -> np.ndarray:
    """facenet crop: ``box`` plus margin, clipped to the image, resized.

    Args:
        image: (H, W, 3) uint8.
        box: (x1, y1, x2, y2) in image pixels.
        image_size: output side.
        margin: total margin (both sides together) in output pixels, in [0, image_size).

    Returns:
        (image_size, image_size, 3) uint8.
    """
    size = _check_size(image_size)
    if not 0 <= margin < size:
        raise InputError(f"margin must be in [0, image_size). Received: margin={margin}, image_size={size}")
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx = margin * (x2 - x1) / (size - margin) / 2.0
    my = margin * (y2 - y1) / (size - margin) / 2.0
    left, top = int(max(np.floor(x1 - mx), 0)), int(max(np.floor(y1 - my), 0))
    right, bottom = int(min(np.ceil(x2 + mx), width)), int(min(np.ceil(y2 + my), height))
    if right - left < 1 or bottom - top < 1:
        raise AlignmentError(f"face box {tuple(round(v, 1) for v in (x1, y1, x2, y2))} lies outside the image")
    face = image[top:bottom, left:right]
    interp = cv2.INTER_AREA if min(face.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interp)


def similarity_matrix(landmarks: np.ndarray, image_size: int = 160) -> np.ndarray:
    """(2, 3) rotation + uniform scale + translation taking the five landmarks closest
    (least squares) onto :func:`landmark_template` at ``image_size``.

    Raises:
        AlignmentError: not five finite points, or points that admit no transform.
    """
    size = _check_size(image_size)
    src = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if src.shape != (5, 2) or not np.all(np.isfinite(src)):
        raise AlignmentError(f"expected 5 finite landmarks (5, 2); got shape {np.asarray(landmarks).shape}")
    # RANSAC with a threshold no point can exceed keeps all five as inliers; OpenCV then
    # refines the model on all of them (least squares, as skimage's SimilarityTransform).
    matrix, _ = cv2.estimateAffinePartial2D(
        src, landmark_template(size), method=cv2.RANSAC, ransacReprojThreshold=1e6
    )
    if matrix is None or not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:, :2])) < 1e-8:
        raise AlignmentError("degenerate landmarks: no similarity transform to the template")
    return matrix


def warp(image: np.ndarray, matrix: np.ndarray, image_size: int) -> np.ndarray:
    """``image`` warped by a (2, 3) matrix into an ``image_size`` square; the border is
    replicated (a face near the frame edge, or a tight crop, is warped past its edges)."""
    return cv2.warpAffine(image, matrix, (image_size, image_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def similarity_align(image: np.ndarray, landmarks: np.ndarray, image_size: int = 160) -> np.ndarray:
    """Warp the face so its five landmarks best fit :func:`landmark_template`.

    Args:
        image: (H, W, 3) uint8.
        landmarks: (5, 2) points in :data:`~facelivenet.detect.LANDMARK_NAMES` order.
        image_size: output side.

    Returns:
        (image_size, image_size, 3) uint8; outside the source image the border is replicated.
    """
    return warp(image, similarity_matrix(landmarks, image_size), _check_size(image_size))


def align_face(image: np.ndarray, detection, image_size: int = 160, mode: str = "crop", margin: float = 32) -> np.ndarray:
    """Cut one detected face out of ``image`` as the network expects it.

    Args:
        image: (H, W, 3) uint8 RGB, the image the detection came from.
        detection: a :class:`~facelivenet.detect.Detection` (``.box``, ``.landmarks``).
        image_size: output side (``NetworkConfig.image_size``).
        mode: ``"crop"`` or ``"similarity"`` (``NetworkConfig.alignment``).
        margin: margin of ``"crop"`` in output pixels (``NetworkConfig.margin``).

    Returns:
        (image_size, image_size, 3) uint8 RGB face.
    """
    if mode == "crop":
        return crop_face(image, detection.box, image_size, margin)
    if mode == "similarity":
        return similarity_align(image, detection.landmarks, image_size)
    raise InputError(f"alignment mode must be one of {ALIGN_MODES}. Received: mode={mode!r}")


def pick_main_face(detections: Sequence, image_shape: Sequence[int], min_score: float = 0.9):
    """The largest, most central face (facenet's rule), or None when there is none.

    Value of a face: box area minus twice the squared distance between its centre and
    the image centre (facenet). Faces scoring >= ``min_score`` (the realtime rule of
    the original, 0.9) are preferred, so that a small, doubtful detection near the
    centre does not beat a clear face off-centre; when no face reaches it, all compete.

    Args:
        detections: Detections of one image.
        image_shape: (H, W, ...) of that image.
        min_score: score of the faces preferred.
    """
    if not detections:
        return None
    sure = [d for d in detections if d.score >= min_score]
    height, width = image_shape[:2]
    best, best_value = None, -np.inf
    for det in sure or detections:
        x1, y1, x2, y2 = det.box
        area = (x2 - x1) * (y2 - y1)
        off = ((x1 + x2) / 2.0 - width / 2.0) ** 2 + ((y1 + y2) / 2.0 - height / 2.0) ** 2
        value = area - 2.0 * off
        if value > best_value:
            best, best_value = det, value
    return best
