"""The two-branch FaceLiveNet network on an Inception-ResNet-v1 trunk.

``FaceLiveNet(config)`` builds, in one functional graph::

    image (raw RGB pixels) → standardise → stem → N35 x Block35 → Mixed_6a
      → N17 x Block17 → Mixed_7a  (shared)
        ├─ branch 1: N8 x Block8 → Block8 (linear) → avg pool → dropout
        │            → bottleneck dense → batch norm → L2 norm   = "embedding"
        ├─ branch 2: N8 x Block8 → Block8 (linear) → avg pool → dropout
        │            → dense 128 → batch norm → ReLU              = "expression_features"
        │            → dense C (no ReLU)                          = "expression_logits"
        │            → softmax                                    = "expression_probs"
        └─ dynamic-weight unit (FaceLiveNet+): flatten → L2 norm → dense 2 → softmax
                                                                  = "task_weights" (per sample;
                                                                    the batch mean is (w1, w2))
"""

from __future__ import annotations

from typing import Any, Iterable

import keras
from keras import layers, ops

from facelivenet.config import NetworkConfig
from facelivenet.models.blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
    apply_block17,
    apply_block35,
    apply_block8,
    apply_reduction_a,
    apply_reduction_b,
    apply_stem,
)
from facelivenet.models.layers import FaceStandardization

#: Layer-name prefixes of the two branches. Branch 2's layers are named like branch
#: 1's with ``EXPR`` instead of ``VERIF``, so stage 2 can copy weights by name.
VERIF = "verif"
EXPR = "expr"
#: Names of the model outputs (the model returns a dict with these keys).
OUTPUTS = ("embedding", "expression_logits", "expression_probs", "expression_features", "task_weights")


def _apply_block8_tower(x, n8: int, prefix: str, weight_decay: float, width: float):
    for i in range(n8):
        x = apply_block8(x, 0.20, name=f"{prefix}_Block8_{i + 1}", weight_decay=weight_decay, width=width)
    x = apply_block8(x, 1.0, activation=False, name=f"{prefix}_Block8_linear", weight_decay=weight_decay,
                     width=width)
    x = layers.GlobalAveragePooling2D(name=f"{prefix}_avgpool")(x)
    return x


def _dense_bn(x, units, *, name, weight_decay):
    x = layers.Dense(
        units, use_bias=False, name=f"{name}",
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay > 0 else None,
    )(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)


@keras.saving.register_keras_serializable(package="facelivenet")
class FaceLiveNet(keras.Model):
    """Face verification + expression recognition in one network.

    Args:
        config: a :class:`NetworkConfig` or its ``to_dict()`` form.

    Call it on a (N, S, S, 3) batch of raw RGB pixel values (uint8 or float in
    [0, 255]); it returns a dict with the keys of :data:`OUTPUTS`.
    """

    def __init__(self, config: NetworkConfig | dict | None = None, **kwargs: Any):
        if config is None:
            config = NetworkConfig()
        elif isinstance(config, dict):
            config = NetworkConfig.from_dict(config)
        n35, n17, n8 = config.depths
        wd = config.weight_decay
        w = config.width
        size = config.image_size

        # === Functional Model ===
        image = keras.Input((size, size, 3), name="image")
        x = FaceStandardization(config.standardization, name="standardize")(image)
        x = apply_stem(x, weight_decay=wd, width=w)
        for i in range(n35):
            x = apply_block35(x, 0.17, name=f"Block35_{i + 1}", weight_decay=wd, width=w)
        x = apply_reduction_a(x, name="Mixed_6a", weight_decay=wd, width=w)
        for i in range(n17):
            x = apply_block17(x, 0.10, name=f"Block17_{i + 1}", weight_decay=wd, width=w)
        shared = apply_reduction_b(x, name="Mixed_7a", weight_decay=wd, width=w)

        v = _apply_block8_tower(shared, n8, VERIF, wd, w)
        v = layers.Dropout(config.dropout, name=f"{VERIF}_dropout")(v)
        v = _dense_bn(v, config.embedding_size, name=f"{VERIF}_bottleneck", weight_decay=wd)
        embedding = layers.UnitNormalization(axis=-1, name="embedding")(v)

        e = _apply_block8_tower(shared, n8, EXPR, wd, w)
        e = layers.Dropout(config.dropout, name=f"{EXPR}_dropout")(e)
        e = _dense_bn(e, config.expression_hidden, name=f"{EXPR}_hidden", weight_decay=wd)
        features = layers.Activation("relu", name="expression_features")(e)
        logits = layers.Dense(
            len(config.expression_classes), name="expression_logits",
            kernel_regularizer=keras.regularizers.L2(wd) if wd > 0 else None,
        )(features)
        probs = layers.Softmax(name="expression_probs", dtype="float32")(logits)

        w = layers.Flatten(name="dyn_flatten")(shared)
        w = layers.UnitNormalization(axis=-1, name="dyn_l2")(w)
        w = layers.Dense(2, name="dyn_dense")(w)
        task_weights = layers.Softmax(name="task_weights", dtype="float32")(w)

        super().__init__(
            inputs=image,
            outputs={
                "embedding": embedding,
                "expression_logits": logits,
                "expression_probs": probs,
                "expression_features": features,
                "task_weights": task_weights,
            },
            **kwargs,
        )

        # === Config ===
        self.network_config = config

    def get_config(self) -> dict[str, Any]:
        return {"config": self.network_config.to_dict(), "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "FaceLiveNet":
        return cls(**config)

    # --- parts ---------------------------------------------------------------------------

    def branch_layers(self, prefix: str) -> list[keras.layers.Layer]:
        """Layers of one branch (``VERIF`` or ``EXPR``) from Mixed_7a on, in graph order."""
        return [l for l in self.layers if l.name.startswith(prefix + "_")]

    def verification_layers(self) -> list[keras.layers.Layer]:
        """Stem + branch 1: everything used to compute the embedding."""
        skip = (EXPR + "_", "dyn_", "expression_", "task_weights")
        return [l for l in self.layers if not l.name.startswith(skip)]

    def copy_branch1_to_branch2(self) -> int:
        """Initialise branch 2 from branch 1 (stage 2 of the papers).

        Copies every branch-1 layer's weights into the branch-2 layer of the same
        name and shape (the Block8 tower; the bottleneck differs in width and is
        skipped). Returns the number of layers copied.
        """
        by_name = {layer.name: layer for layer in self.layers}
        pairs = ((src, by_name.get(EXPR + src.name[len(VERIF):])) for src in self.branch_layers(VERIF))
        return copy_matching_weights((src, dst) for src, dst in pairs if dst is not None)


def copy_matching_weights(pairs: Iterable[tuple[keras.layers.Layer, keras.layers.Layer]]) -> int:
    """Copy each (source, destination) layer's weights when they match in number and
    every shape; layers without weights or of other shapes are left alone.

    Returns:
        The number of layers copied.
    """
    copied = 0
    for src, dst in pairs:
        sw, dw = src.get_weights(), dst.get_weights()
        if sw and len(sw) == len(dw) and all(a.shape == b.shape for a, b in zip(sw, dw)):
            dst.set_weights(sw)
            copied += 1
    return copied


def task_weights_mean(per_sample_weights):
    """Batch mean of the dynamic-weight unit's per-sample softmax: (N, 2) → (2,) = (w1, w2)."""
    return ops.mean(per_sample_weights, axis=0)


def count_params(layer_list) -> int:
    """Trainable parameter count of a list of layers."""
    return int(sum(int(ops.size(w)) for l in layer_list for w in l.trainable_weights))
