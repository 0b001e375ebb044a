"""tf.distribute strategies and mixed precision for the training loop (TensorFlow only).

- ``default``: one device (``tf.distribute.get_strategy()``).
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (or the CPU).
- ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster comes from the
  ``TF_CONFIG`` environment variable. Only the chief (task 0) writes files.

Precision: ``bf16`` and ``fp16`` set Keras' global dtype policy to ``mixed_bfloat16`` /
``mixed_float16`` while the model is built and trained (variables stay float32, the
losses are computed in float32); ``fp16`` also wraps the optimizer in loss scaling.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import keras
import tensorflow as tf

from facelivenet.errors import ConfigError

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for ``--strategy NAME``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" in os.environ:
            try:
                json.loads(os.environ["TF_CONFIG"])
            except ValueError as exc:
                raise ConfigError(f"TF_CONFIG is not valid JSON ({exc})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}; choose default, mirrored or multiworker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, logs and models."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Set Keras' global dtype policy for ``precision`` inside the block; restore it after."""
    if precision not in POLICIES:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {list(POLICIES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def distribute_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by element across workers (the file list is in memory, not in files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
