"""The few custom layers of the network, written with ``keras.ops`` only."""

from __future__ import annotations

import keras
from keras import ops

from facelivenet import preprocess


@keras.saving.register_keras_serializable(package="facelivenet")
class FaceStandardization(keras.layers.Layer):
    """Standardises raw RGB pixels ([0, 255]) with :func:`facelivenet.preprocess.standardize`.

    Being the model's first layer, it makes the saved model carry its own
    preprocessing: callers feed uint8 or float pixels, never standardised values.
    """

    def __init__(self, method: str = "fixed", **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def call(self, inputs):
        return preprocess.standardize(inputs, self.method)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "method": self.method}


@keras.saving.register_keras_serializable(package="facelivenet")
class ScaledResidual(keras.layers.Layer):
    """``shortcut + scale * residual``: the scaled sum of the Inception-ResNet blocks."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        shortcut, residual = inputs
        return ops.add(shortcut, ops.multiply(residual, self.scale))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
