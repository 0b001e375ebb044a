"""The tf.data input pipeline for training and validation (TensorFlow only).

Training batches: a seeded permutation per epoch, parallel decoding (our
:func:`facelivenet.images.read_image`, so PGM, 16-bit, grey and RGBA files all work
and grey becomes 3-channel RGB), resize to ``load_size(image_size)`` (182 for 160, as
the original aligned at 182), a random ``image_size`` crop and a random horizontal
flip drawn from stateless seeds derived from (seed, epoch, position). The same seed
gives the same batches, and :func:`training_dataset` can start mid-epoch, which is
what makes ``--resume`` exact.

Images stay raw RGB pixels (uint8, [0, 255]): the model standardises them itself.
Validation images are resized to ``image_size`` without a crop, like inference.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from facelivenet.errors import DatasetError, ImageReadError
from facelivenet.images import read_image
from facelivenet.preprocess import resize_face

#: The original aligned faces at 182 px and randomly cropped 160 px out of them.
LOAD_RATIO = 182 / 160


def load_size(image_size: int) -> int:
    """Side the training images are resized to before the random crop."""
    return int(round(image_size * LOAD_RATIO))


def _loader(size: int):
    def load(path: bytes) -> np.ndarray:
        return resize_face(read_image(path.decode()), size)

    return load


def _decode(paths: tf.Tensor, size: int) -> tf.Tensor:
    image = tf.numpy_function(_loader(size), [paths], tf.uint8, stateful=False)
    image.set_shape((size, size, 3))
    return image


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded order of the ``n`` samples in ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped)."""
    return n // batch_size


def training_dataset(
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    image_size: int,
    batch_size: int,
    seed: int,
    epoch: int,
    skip_batches: int = 0,
    random_crop: bool = True,
    flip: bool = True,
) -> tf.data.Dataset:
    """One epoch of augmented training batches ``(images (B,S,S,3) uint8, labels (B,...) int32)``.

    Args:
        labels: (N,) or (N, M) int labels (M label columns for multi-task data).
        skip_batches: batches of this epoch already done (resuming mid-epoch).

    Raises:
        DatasetError: fewer images than one batch.
    """
    n = len(paths)
    if n < batch_size:
        raise DatasetError(f"{n} training images are fewer than one batch of {batch_size}")
    order = epoch_order(n, seed, epoch)
    start = skip_batches * batch_size
    order = order[start : steps_per_epoch(n, batch_size) * batch_size]
    p = np.asarray(paths, dtype=object)[order].astype(str)
    y = np.asarray(labels, np.int32)[order]
    position = np.arange(start, start + len(order), dtype=np.int64)
    size = load_size(image_size) if random_crop else image_size
    base = np.int64(seed) * 1_000_003 + np.int64(epoch)

    def augment(path, label, pos):
        image = _decode(path, size)
        s = tf.stack([tf.constant(base, tf.int64), pos])
        if random_crop:
            image = tf.image.stateless_random_crop(image, (image_size, image_size, 3), seed=s)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=s + 7)
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((p, y, position))
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def joint_dataset(
    paths: Sequence[str],
    landmarks: np.ndarray,
    targets: np.ndarray,
    *,
    image_size: int,
    batch_size: int,
    seed: int,
    epoch: int,
    skip_batches: int = 0,
    flip: bool = True,
    gray_share: float = 0.25,
    repeats: np.ndarray | None = None,
) -> tf.data.Dataset:
    """One epoch of joint training batches ``(images (B,S,S,3) uint8, targets (B,M) float32)``.

    Each face is warped from its source image by its five ``landmarks`` (N, 5, 2) onto
    the model's template, with the seeded jitter, flip and random grey of
    :func:`facelivenet.data.joint.load_face`; ``targets`` are the packed label columns
    of :class:`facelivenet.train.stages.JointLayout`. Same order and resume rule as
    :func:`training_dataset`. ``repeats`` (N,) ints >= 1: how many times each face
    enters the epoch's pool (each copy with its own jitter), to weigh small sources up.
    """
    from facelivenet.data.joint import load_face

    n = len(paths)
    if n < batch_size:
        raise DatasetError(f"{n} training images are fewer than one batch of {batch_size}")
    pool = np.arange(n) if repeats is None else np.repeat(np.arange(n), np.asarray(repeats, np.int64))
    order = pool[epoch_order(len(pool), seed, epoch)]
    start = skip_batches * batch_size
    order = order[start : steps_per_epoch(len(pool), batch_size) * batch_size]
    all_paths = np.asarray(paths, dtype=object)
    marks = np.asarray(landmarks, np.float32)
    y = np.asarray(targets, np.float32)[order]
    position = np.arange(start, start + len(order), dtype=np.int64)

    def load(index, pos):
        i = int(index)
        return load_face(all_paths[i], marks[i], image_size, seed=(seed, epoch, int(pos)), flip=flip,
                         gray_share=gray_share)

    def decode(index, label, pos):
        image = tf.numpy_function(load, [index, pos], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((order.astype(np.int64), y, position))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def eval_dataset(paths: Sequence[str], *, image_size: int, batch_size: int) -> tf.data.Dataset:
    """Batches of un-augmented images (resized to ``image_size``), in the given order."""
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(list(paths), dtype=str))
    ds = ds.map(lambda p: _decode(p, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(2)


@contextlib.contextmanager
def image_errors() -> Iterator[None]:
    """Turn a decoding failure inside the pipeline back into our one-line :class:`ImageReadError`.

    tf.data reports an exception of the Python loader as an ``OpError`` whose message
    holds the original one; anything else is re-raised unchanged.
    """
    try:
        yield
    except tf.errors.OpError as exc:
        m = re.search(r"ImageReadError: (.+)", str(exc))
        if m:
            raise ImageReadError(m.group(1).strip()) from None
        raise
