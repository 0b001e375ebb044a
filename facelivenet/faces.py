"""One face path: an image → its faces, under a named policy, in the model's own geometry.

Every part of the house that turns a picture into the faces the network sees goes
through :class:`FacePath`: the frame analyser of authentication, enrolment and the
``--ref`` photo, the evaluation protocols, calibration and the facade
(:class:`facelivenet.FaceAuth`). It reads the geometry from the model's config
(``image_size``, ``alignment``, ``margin``), so training, evaluation and authentication
cut the same face.

Policies (:data:`POLICIES`):

* ``all``: every face whose detector score reaches :data:`MIN_FACE_SCORE`;
* ``one``: exactly one such face, else an :class:`~facelivenet.errors.InputError`
  ("no face found" / "N faces found"): enrolment, reference photos, ``compare``;
* ``main``: the largest, most central face (facenet's rule), an error when none;
* ``main_or_center``: the main face, or a centre crop flagged ``detected=False``
  (evaluation protocols on benchmark images, which always hold a face).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facelivenet.errors import FaceCountError, InputError

#: Detector score a face needs to count (the original realtime rule, > 0.9).
MIN_FACE_SCORE = 0.9
#: File extensions read as images wherever a folder of images is scanned.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".pbm", ".tif", ".tiff", ".webp", ".gif",
)
POLICIES: tuple[str, ...] = ("all", "one", "main", "main_or_center")


#: Side of the fallback box, as a share of the image's shorter side (LFW: 125 of 250 px,
#: about the face of a deep-funneled image).
CENTER_BOX_FRACTION = 0.5


def center_box(image_shape: Sequence[int], fraction: float = CENTER_BOX_FRACTION) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the centred square whose side is ``fraction`` of the shorter side."""
    height, width = image_shape[:2]
    side = fraction * min(height, width)
    cx, cy = width / 2.0, height / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


def is_image_file(name: str | os.PathLike) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Face:
    """One face of an image.

    Attributes:
        box: (x1, y1, x2, y2) in image pixels.
        score: detector confidence (0 for a centre crop).
        landmarks: (5, 2) left eye, right eye, nose, mouth left, mouth right (None for a
            centre crop).
        crop: (S, S, 3) uint8 RGB face as the network takes it.
        detected: False for the centre crop of ``main_or_center``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None
    crop: np.ndarray
    detected: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": None if self.landmarks is None else np.round(np.asarray(self.landmarks, float), 1).tolist(),
            "detected": self.detected,
        }


def as_image(image: Any, source: str | None = None) -> tuple[np.ndarray, str]:
    """``(H, W, 3) uint8 RGB array, name for messages)`` from a path, an array or a PIL image.

    Raises:
        InputError: any other type, or an array that is not an image.
        ImageReadError: a path that cannot be read as an image.
    """
    from facelivenet.preprocess import to_rgb

    if isinstance(image, (str, os.PathLike)):
        from facelivenet.images import read_image

        return read_image(image), source or str(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
            raise InputError(f"{source or 'image'}: expected an H x W (x 1/3/4) uint8 array; "
                             f"got {image.dtype} of shape {image.shape}")
        return to_rgb(image), source or "image"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        from facelivenet.images import _pil_to_array

        return to_rgb(_pil_to_array(image)), source or "image"
    raise InputError(f"{source or 'image'}: expected a file path, a numpy array or a PIL image; "
                     f"got {type(image).__name__}")


class FacePath:
    """Detector + the model's alignment: ``faces(image, policy)``.

    Args:
        config: the model's :class:`~facelivenet.config.NetworkConfig` (geometry).
        detector: object with ``detect(image, downscale=...)`` (and optionally
            ``detect_batch``); default: :class:`facelivenet.detect.FaceDetector`.
        align: ``align(image, detection, image_size, mode, margin)``; default
            :func:`facelivenet.detect.align_face`.
        detect_max_side: images whose longer side exceeds this are downscaled for
            detection (boxes mapped back; crops cut from the full image). None: never.
        min_score: the score a face needs (:data:`MIN_FACE_SCORE`).
    """

    def __init__(self, config: Any, detector: Any = None, align: Any = None, *,
                 detect_max_side: int | None = None, min_score: float = MIN_FACE_SCORE):
        if detector is None or align is None:
            from facelivenet.detect import FaceDetector, align_face

            detector = detector if detector is not None else FaceDetector()
            align = align if align is not None else align_face
        self.config = config
        self.detector = detector
        self._align = align
        self.detect_max_side = detect_max_side
        self.min_score = float(min_score)

    # --- building blocks ----------------------------------------------------------------
    def _factor(self, image: np.ndarray) -> float:
        longest = max(image.shape[:2])
        if self.detect_max_side and longest > self.detect_max_side:
            return longest / self.detect_max_side
        return 1.0

    def detections(self, image: np.ndarray, *, full_resolution: bool = False) -> list[Any]:
        """Every detection of ``image``, best first, in image pixels (no score filter);
        ``full_resolution`` searches the frame as it is, whatever ``detect_max_side``."""
        factor = 1.0 if full_resolution else self._factor(image)
        if factor == 1.0:
            return list(self.detector.detect(image))
        return list(self.detector.detect(image, downscale=factor))

    def detect(self, image: np.ndarray, *, full_resolution: bool = False) -> list[Any]:
        """Detections with score >= ``min_score``."""
        return [d for d in self.detections(image, full_resolution=full_resolution) if float(d.score) >= self.min_score]

    def align(self, image: np.ndarray, detection: Any) -> np.ndarray:
        cfg = self.config
        return self._align(image, detection, cfg.image_size, cfg.alignment, cfg.margin)

    def _face(self, image: np.ndarray, d: Any) -> Face:
        return Face(tuple(float(v) for v in d.box), float(d.score), np.asarray(d.landmarks, np.float64),
                    self.align(image, d))

    # --- policies -------------------------------------------------------------------------
    def select(self, image: np.ndarray, detections: Sequence[Any], policy: str, source: str = "image") -> list[Face]:
        """The faces of ``image`` that ``policy`` keeps, given its ``detections``."""
        from facelivenet.detect import crop_face, pick_main_face

        if policy not in POLICIES:
            raise InputError(f"face policy must be one of {list(POLICIES)}. Received: {policy!r}")
        sure = [d for d in detections if float(d.score) >= self.min_score]
        if policy == "all":
            return [self._face(image, d) for d in sure]
        if policy == "one":
            if not sure:
                raise FaceCountError(f"{source}: no face found")
            if len(sure) > 1:
                raise FaceCountError(f"{source}: {len(sure)} faces found; the image must show one person")
            return [self._face(image, sure[0])]
        main = pick_main_face(list(detections), image.shape, self.min_score)
        if main is not None:
            return [self._face(image, main)]
        if policy == "main":
            raise FaceCountError(f"{source}: no face found")
        box = center_box(image.shape)
        cfg = self.config
        return [Face(tuple(box), 0.0, None, crop_face(image, box, cfg.image_size, cfg.margin), detected=False)]

    def faces(self, image: Any, policy: str = "all", source: str | None = None) -> list[Face]:
        """The faces of one image (path, array or PIL image) under ``policy``."""
        array, name = as_image(image, source)
        return self.select(array, self.detections(array), policy, name)

    def faces_batch(self, images: Sequence[np.ndarray], policy: str = "all",
                    sources: Sequence[str] | None = None) -> list[list[Face]]:
        """:meth:`faces` for many RGB arrays; images of one shape share detector calls."""
        names = list(sources) if sources is not None else [f"image #{i + 1}" for i in range(len(images))]
        batch = getattr(self.detector, "detect_batch", None)
        if batch is not None and not self.detect_max_side:
            found = batch(list(images))
        else:
            found = [self.detections(im) for im in images]
        return [self.select(im, dets, policy, n) for im, dets, n in zip(images, found, names)]
