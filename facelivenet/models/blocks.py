"""Inception-ResNet-v1 building blocks as ``apply_*`` functions on Keras tensors.

The layout and layer names follow facenet's ``inception_resnet_v1.py`` (TF-slim),
which facenet-pytorch mirrors: convolutions have no bias and are followed by batch
norm (decay 0.995, epsilon 0.001, values found in TensorFlow-slim facenet; with a
learned scale as in facenet-pytorch, whose parameter count we match) and ReLU;
the 1x1 "up" convolution that closes each residual block has a bias and no norm.
"""

from __future__ import annotations

import keras
from keras import layers

from facelivenet.models.layers import ScaledResidual

BN_MOMENTUM = 0.995  # facenet's batch_norm decay
BN_EPSILON = 0.001  # value found in tensorflow facenet


def _regularizer(weight_decay: float):
    return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


def scaled_filters(filters: int, width: float) -> int:
    """facenet's filter count ``filters`` times the width multiplier (at least 8)."""
    return filters if width == 1.0 else max(8, int(round(filters * width)))


def apply_conv_bn(x, filters, kernel_size, strides=1, padding="same", *, name, weight_decay=0.0, width=1.0):
    """Conv2D (no bias) → BatchNorm → ReLU, named like facenet's slim scopes.

    ``filters`` is facenet's count; ``width`` scales it (see :func:`scaled_filters`).
    """
    x = layers.Conv2D(
        scaled_filters(filters, width), kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_regularizer=_regularizer(weight_decay), name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _close_residual(x, mixed, scale, activation, *, name, weight_decay, width=1.0):
    # The 1x1 "up" convolution restores x's channel count, which already carries ``width``.
    up = layers.Conv2D(
        x.shape[-1], 1, use_bias=True, kernel_regularizer=_regularizer(weight_decay),
        name=f"{name}_up",
    )(mixed)
    x = ScaledResidual(scale, name=f"{name}_sum")(
        [x, up]
    )
    if activation:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def apply_block35(x, scale=0.17, activation=True, *, name, weight_decay=0.0, width=1.0):
    """35x35 residual block (Inception-ResNet-A): 3 towers of 32 filters."""
    kw = dict(weight_decay=weight_decay, width=width)
    b0 = apply_conv_bn(x, 32, 1, name=f"{name}_b0_1x1", **kw)
    b1 = apply_conv_bn(x, 32, 1, name=f"{name}_b1_1x1", **kw)
    b1 = apply_conv_bn(b1, 32, 3, name=f"{name}_b1_3x3", **kw)
    b2 = apply_conv_bn(x, 32, 1, name=f"{name}_b2_1x1", **kw)
    b2 = apply_conv_bn(b2, 32, 3, name=f"{name}_b2_3x3a", **kw)
    b2 = apply_conv_bn(b2, 32, 3, name=f"{name}_b2_3x3b", **kw)
    mixed = layers.Concatenate(name=f"{name}_mixed")([b0, b1, b2])
    return _close_residual(x, mixed, scale, activation, name=name, **kw)


def apply_block17(x, scale=0.10, activation=True, *, name, weight_decay=0.0, width=1.0):
    """17x17 residual block (Inception-ResNet-B): 1x1 and factorised 1x7/7x1 towers."""
    kw = dict(weight_decay=weight_decay, width=width)
    b0 = apply_conv_bn(x, 128, 1, name=f"{name}_b0_1x1", **kw)
    b1 = apply_conv_bn(x, 128, 1, name=f"{name}_b1_1x1", **kw)
    b1 = apply_conv_bn(b1, 128, (1, 7), name=f"{name}_b1_1x7", **kw)
    b1 = apply_conv_bn(b1, 128, (7, 1), name=f"{name}_b1_7x1", **kw)
    mixed = layers.Concatenate(name=f"{name}_mixed")([b0, b1])
    return _close_residual(x, mixed, scale, activation, name=name, **kw)


def apply_block8(x, scale=0.20, activation=True, *, name, weight_decay=0.0, width=1.0):
    """8x8 residual block (Inception-ResNet-C): 1x1 and factorised 1x3/3x1 towers."""
    kw = dict(weight_decay=weight_decay, width=width)
    b0 = apply_conv_bn(x, 192, 1, name=f"{name}_b0_1x1", **kw)
    b1 = apply_conv_bn(x, 192, 1, name=f"{name}_b1_1x1", **kw)
    b1 = apply_conv_bn(b1, 192, (1, 3), name=f"{name}_b1_1x3", **kw)
    b1 = apply_conv_bn(b1, 192, (3, 1), name=f"{name}_b1_3x1", **kw)
    mixed = layers.Concatenate(name=f"{name}_mixed")([b0, b1])
    return _close_residual(x, mixed, scale, activation, name=name, **kw)


def apply_reduction_a(x, k=192, l=192, m=256, n=384, *, name, weight_decay=0.0, width=1.0):
    """Mixed_6a (reduction A): 35x35 → 17x17."""
    kw = dict(weight_decay=weight_decay, width=width)
    b0 = apply_conv_bn(x, n, 3, strides=2, padding="valid", name=f"{name}_b0_3x3", **kw)
    b1 = apply_conv_bn(x, k, 1, name=f"{name}_b1_1x1", **kw)
    b1 = apply_conv_bn(b1, l, 3, name=f"{name}_b1_3x3", **kw)
    b1 = apply_conv_bn(b1, m, 3, strides=2, padding="valid", name=f"{name}_b1_3x3s2", **kw)
    b2 = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}_b2_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([b0, b1, b2])


def apply_reduction_b(x, *, name, weight_decay=0.0, width=1.0):
    """Mixed_7a (reduction B): 17x17 → 8x8, 896 → 1792 channels."""
    kw = dict(weight_decay=weight_decay, width=width)
    b0 = apply_conv_bn(x, 256, 1, name=f"{name}_b0_1x1", **kw)
    b0 = apply_conv_bn(b0, 384, 3, strides=2, padding="valid", name=f"{name}_b0_3x3s2", **kw)
    b1 = apply_conv_bn(x, 256, 1, name=f"{name}_b1_1x1", **kw)
    b1 = apply_conv_bn(b1, 256, 3, strides=2, padding="valid", name=f"{name}_b1_3x3s2", **kw)
    b2 = apply_conv_bn(x, 256, 1, name=f"{name}_b2_1x1", **kw)
    b2 = apply_conv_bn(b2, 256, 3, name=f"{name}_b2_3x3", **kw)
    b2 = apply_conv_bn(b2, 256, 3, strides=2, padding="valid", name=f"{name}_b2_3x3s2", **kw)
    b3 = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}_b3_pool")(x)
    return layers.Concatenate(name=f"{name}_concat")([b0, b1, b2, b3])


def apply_stem(x, *, weight_decay=0.0, width=1.0):
    """Conv2d_1a … Conv2d_4b of Inception-ResNet-v1: 160x160x3 → 17x17x256 (at 160 px)."""
    kw = dict(weight_decay=weight_decay, width=width)
    x = apply_conv_bn(x, 32, 3, strides=2, padding="valid", name="Conv2d_1a_3x3", **kw)
    x = apply_conv_bn(x, 32, 3, padding="valid", name="Conv2d_2a_3x3", **kw)
    x = apply_conv_bn(x, 64, 3, padding="same", name="Conv2d_2b_3x3", **kw)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="MaxPool_3a_3x3")(x)
    x = apply_conv_bn(x, 80, 1, padding="valid", name="Conv2d_3b_1x1", **kw)
    x = apply_conv_bn(x, 192, 3, padding="valid", name="Conv2d_4a_3x3", **kw)
    x = apply_conv_bn(x, 256, 3, strides=2, padding="valid", name="Conv2d_4b_3x3", **kw)
    return x
