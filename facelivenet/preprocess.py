"""The one face-preprocessing path: colour, size and standardisation.

Training, evaluation and authentication all go through these functions; a model
records which standardisation it was trained with (``NetworkConfig.standardization``)
and applies it inside its own graph (:class:`facelivenet.models.layers.FaceStandardization`
calls :func:`standardize`), so raw RGB pixels are what every caller feeds.

Constants:
    FIXED_MEAN, FIXED_SCALE: ``"fixed"`` standardisation is ``(x - 127.5) / 128``
        (later facenet, and facenet-pytorch's ``fixed_image_standardization``).
"""

from __future__ import annotations

import cv2
import numpy as np

from facelivenet.config import STANDARDIZATIONS
from facelivenet.errors import ConfigError, InputError

FIXED_MEAN = 127.5
FIXED_SCALE = 1.0 / 128.0
#: RGB weights of the luma that ``"fixed_grey"`` standardisation uses (ITU-R BT.601).
LUMA = (0.299, 0.587, 0.114)


def standardize(images, method: str):
    """Standardise a batch of RGB faces with pixel values in [0, 255].

    Args:
        images: (N, H, W, C) tensor or array, any real dtype; cast to float32.
        method: ``"fixed"``: ``(x - 127.5) / 128``; ``"per_image"``: facenet's
            prewhitening ``(x - mean) / max(std, 1 / sqrt(H*W*C))`` per image;
            ``"fixed_grey"``: the ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` in
            every channel, then ``"fixed"`` (a model that sees colour faces as the grey
            expression datasets show them).

    Returns:
        (N, H, W, C) float32 backend tensor.
    """
    from keras import ops  # here, not at the top: reading an image must not import Keras

    x = ops.cast(images, "float32")
    if method == "fixed":
        return (x - FIXED_MEAN) * FIXED_SCALE
    if method == "fixed_grey":
        luma = ops.sum(x * ops.convert_to_tensor(LUMA, "float32"), axis=-1, keepdims=True)
        return (ops.repeat(luma, ops.shape(x)[-1], axis=-1) - FIXED_MEAN) * FIXED_SCALE
    if method == "per_image":
        axes = (1, 2, 3)
        mean = ops.mean(x, axis=axes, keepdims=True)
        std = ops.std(x, axis=axes, keepdims=True)
        n = ops.cast(ops.prod(ops.shape(x)[1:]), "float32")
        std_adj = ops.maximum(std, 1.0 / ops.sqrt(n))
        return (x - mean) / std_adj
    raise ConfigError(f"unknown standardization {method!r}; choose one of {STANDARDIZATIONS}")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB copy of a grey, grey+alpha, RGB or RGBA image.

    16-bit images are scaled to 8 bits. Anything else raises :class:`InputError`.
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64) and img.size and img.max() <= 1.0:
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3])
    raise InputError(f"expected a grey, RGB or RGBA image; got an array of shape {img.shape}")


def resize_face(face: np.ndarray, size: int) -> np.ndarray:
    """Resize one face crop to ``size`` x ``size`` (area filter down, bilinear up)."""
    h, w = face.shape[:2]
    if (h, w) == (size, size):
        return face
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interp)


def prepare_faces(faces, size: int) -> np.ndarray:
    """Turn face crops into the network's (N, size, size, 3) uint8 RGB batch.

    Args:
        faces: an (N, H, W, 3) uint8 array, or a sequence of images of any size and
            any of the colour layouts :func:`to_rgb` accepts.
        size: the model's input side.

    Returns:
        (N, size, size, 3) uint8 array (the input itself when it already fits).
    """
    if isinstance(faces, np.ndarray) and faces.ndim == 4:
        if faces.shape[0] == 0:
            return np.zeros((0, size, size, 3), np.uint8)
        if faces.shape[1:] == (size, size, 3) and faces.dtype == np.uint8:
            return faces
        items = list(faces)
    else:
        items = list(faces)
        if not items:
            return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([resize_face(to_rgb(f), size) for f in items])
