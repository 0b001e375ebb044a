"""Compiled forward passes of the three networks (backend-specific code lives here).

Each stage's work is one compiled call, traced once with dynamic shapes and reused
for every image size and candidate count:

* P-Net: ``pnet(image, sizes) -> (offsets, probs)``: for every pyramid level, area-resize
  the uint8 image, normalise, run P-Net; all levels in one call (an in-graph loop on
  TensorFlow), their output maps flattened and concatenated level after level.
* R-Net / O-Net: ``rnet(images, boxes, image_index)``: cut every candidate box out of
  its image with bilinear sampling (TensorFlow's ``crop_and_resize``; the area outside
  the image reads as the normalisation mean), normalise and run the network on the
  whole batch of candidates at once.

On TensorFlow these are ``tf.function``s; on another backend the same steps run with
OpenCV / numpy (:func:`facelivenet.detect.boxes.crop_patches`) and eager model calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import keras
import numpy as np

from facelivenet.detect import boxes as bx
from facelivenet.detect.mtcnn_nets import MEAN, SCALE, load_network


@dataclass(frozen=True)
class CascadeRunners:
    """The three compiled forwards; every argument and result is a numpy array.

    Attributes:
        pnet: (image (H, W, 3) uint8, sizes (S, 2) level sizes (h, w)) → offsets (M, 4),
            face probs (M,): the output maps of the S levels, each flattened row-major
            (:func:`facelivenet.detect.boxes.pnet_output_size` cells), one after another.
        rnet: (images (B, H, W, 3) uint8, boxes (N, 4), image_index (N,)) → offsets (N, 4),
            face probs (N,).
        onet: same inputs → offsets (N, 4), landmarks (N, 10), face probs (N,).
    """

    pnet: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    rnet: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    onet: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def build_runners() -> CascadeRunners:
    """Load the pretrained networks and compile their forwards for the current backend."""
    pnet, rnet, onet = (load_network(n) for n in ("pnet", "rnet", "onet"))
    if keras.backend.backend() == "tensorflow":
        return _tensorflow_runners(pnet, rnet, onet)
    return _eager_runners(pnet, rnet, onet)


def _normalized_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) pixel boxes → (N, 4) float32 ``[y1, x1, y2, x2]`` divided by the image size.

    crop_and_resize maps 0..1 onto pixels 0..W-1, so this samples ``x (W - 1) / W``:
    ipazc/mtcnn's convention, kept so that we find the same boxes.
    """
    scale = np.array([width, height] * 2, dtype=np.float64)
    return (np.asarray(boxes, dtype=np.float64) / scale)[:, [1, 0, 3, 2]].astype(np.float32)


def _tensorflow_runners(pnet: keras.Model, rnet: keras.Model, onet: keras.Model) -> CascadeRunners:
    import tensorflow as tf

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, 2], tf.int32)],
        reduce_retracing=True,
    )
    def pnet_fn(image, sizes):
        levels = tf.shape(sizes)[0]
        empty = dict(size=levels, infer_shape=False)
        all_offsets = tf.TensorArray(tf.float32, element_shape=[None, 4], **empty)
        all_probs = tf.TensorArray(tf.float32, element_shape=[None], **empty)

        def level(i, all_offsets, all_probs):
            scaled = tf.image.resize(image[None], sizes[i], method=tf.image.ResizeMethod.AREA)
            offsets, probs = pnet((scaled - MEAN) * SCALE, training=False)
            return (
                i + 1,
                all_offsets.write(i, tf.reshape(offsets, [-1, 4])),
                all_probs.write(i, tf.reshape(probs[..., 1], [-1])),
            )

        _, all_offsets, all_probs = tf.while_loop(
            lambda i, *_: i < levels, level, (0, all_offsets, all_probs), parallel_iterations=4
        )
        return all_offsets.concat(), all_probs.concat()

    def patches_fn(model: keras.Model, size: int):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.uint8),
                tf.TensorSpec([None, 4], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ],
            reduce_retracing=True,
        )
        def fn(images, boxes, index):
            patches = tf.image.crop_and_resize(images, boxes, index, (size, size), extrapolation_value=MEAN)
            out = model((patches - MEAN) * SCALE, training=False)
            return tuple(out[:-1]) + (out[-1][:, 1],)

        return fn

    rnet_fn, onet_fn = patches_fn(rnet, 24), patches_fn(onet, 48)

    def run_pnet(image, sizes):
        offsets, probs = pnet_fn(image, np.asarray(sizes, np.int32).reshape(-1, 2))
        return offsets.numpy(), probs.numpy()

    def run_patches(fn):
        def run(images, boxes, index):
            height, width = images.shape[1:3]
            out = fn(images, _normalized_boxes(boxes, height, width), np.asarray(index, np.int32))
            return tuple(t.numpy() for t in out)

        return run

    return CascadeRunners(run_pnet, run_patches(rnet_fn), run_patches(onet_fn))


def _eager_runners(pnet: keras.Model, rnet: keras.Model, onet: keras.Model) -> CascadeRunners:
    from keras import ops

    def run_pnet(image, sizes):
        all_offsets, all_probs = [], []
        pixels = image.astype(np.float32)
        for h, w in sizes:
            scaled = cv2.resize(pixels, (int(w), int(h)), interpolation=cv2.INTER_AREA)
            offsets, probs = pnet((scaled[None] - MEAN) * SCALE, training=False)
            all_offsets.append(ops.convert_to_numpy(offsets).reshape(-1, 4))
            all_probs.append(ops.convert_to_numpy(probs)[..., 1].reshape(-1))
        return np.concatenate(all_offsets), np.concatenate(all_probs)

    def run_patches(model, size):
        def run(images, boxes, index):
            patches = bx.crop_patches(images, boxes, index, size, fill=MEAN)
            out = [ops.convert_to_numpy(t) for t in model((patches - MEAN) * SCALE, training=False)]
            return tuple(out[:-1]) + (out[-1][:, 1],)

        return run

    return CascadeRunners(run_pnet, run_patches(rnet, 24), run_patches(onet, 48))
