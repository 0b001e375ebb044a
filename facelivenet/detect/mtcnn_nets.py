"""P-Net, R-Net and O-Net (Zhang et al. 2016) as functional Keras models.

The layer order and shapes follow ipazc/mtcnn v1, whose weights we load
(:mod:`facelivenet.detect.weights`): every convolution is followed by a PReLU with
weights shared over the spatial axes; R-Net and O-Net flatten their last feature map
in (x, y, channel) order (the Caffe original was column-major), hence the permute.

Inputs are normalised images, ``(pixel - 127.5) / 128``; see :func:`normalize`.
Outputs:

* P-Net, (N, H, W, 3) → offsets (N, h, w, 4), face probability map (N, h, w, 2);
  ``h = ceil((H - 2) / 2) - 4`` (a 12x12 window with stride 2 per output cell).
* R-Net, (N, 24, 24, 3) → offsets (N, 4), probabilities (N, 2).
* O-Net, (N, 48, 48, 3) → offsets (N, 4), landmarks (N, 10), probabilities (N, 2);
  landmarks are x1..x5 then y1..y5, relative to the box.
"""

from __future__ import annotations

import keras
from keras import layers

from facelivenet.detect.weights import load_weights

#: Pixel normalisation of all three networks: ``(x - MEAN) * SCALE``.
MEAN = 127.5
SCALE = 0.0078125  # 1 / 128


def normalize(images):
    """``(images - 127.5) / 128`` as float32; any shape, numpy or backend tensor."""
    return (keras.ops.cast(images, "float32") - MEAN) * SCALE


def _conv_prelu(x, filters: int, kernel: int, name: str):
    x = layers.Conv2D(filters, kernel, padding="valid", name=f"conv{name}")(x)
    return layers.PReLU(shared_axes=[1, 2], name=f"prelu{name}")(x)


def _flatten_fc_prelu(x, units: int, name: str):
    """R-Net/O-Net's head: flatten in Caffe's (channel, width, height) order, dense, PReLU."""
    x = layers.Permute((2, 1, 3), name="permute")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, name=f"fc{name}")(x)
    return layers.PReLU(name=f"prelu{name}")(x)


def build_pnet() -> keras.Model:
    """P-Net: fully convolutional proposal network on images of any size (>= 12 px)."""
    inp = keras.Input((None, None, 3), name="image")
    x = _conv_prelu(inp, 10, 3, "1")
    x = layers.MaxPooling2D(2, 2, padding="same", name="pool1")(x)
    x = _conv_prelu(x, 16, 3, "2")
    x = _conv_prelu(x, 32, 3, "3")
    offsets = layers.Conv2D(4, 1, name="conv4_1")(x)
    probs = layers.Conv2D(2, 1, activation="softmax", name="conv4_2")(x)
    return keras.Model(inp, [offsets, probs], name="pnet")


def build_rnet() -> keras.Model:
    """R-Net: refines 24x24 candidate patches."""
    inp = keras.Input((24, 24, 3), name="patch")
    x = _conv_prelu(inp, 28, 3, "1")
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    x = _conv_prelu(x, 48, 3, "2")
    x = layers.MaxPooling2D(3, 2, padding="valid", name="pool2")(x)
    x = _conv_prelu(x, 64, 2, "3")
    x = _flatten_fc_prelu(x, 128, "4")
    offsets = layers.Dense(4, name="fc5_1")(x)
    probs = layers.Dense(2, activation="softmax", name="fc5_2")(x)
    return keras.Model(inp, [offsets, probs], name="rnet")


def build_onet() -> keras.Model:
    """O-Net: final 48x48 patches → box offsets, five landmarks, face probability."""
    inp = keras.Input((48, 48, 3), name="patch")
    x = _conv_prelu(inp, 32, 3, "1")
    x = layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)
    x = _conv_prelu(x, 64, 3, "2")
    x = layers.MaxPooling2D(3, 2, padding="valid", name="pool2")(x)
    x = _conv_prelu(x, 64, 3, "3")
    x = layers.MaxPooling2D(2, 2, padding="same", name="pool3")(x)
    x = _conv_prelu(x, 128, 2, "4")
    x = _flatten_fc_prelu(x, 256, "5")
    offsets = layers.Dense(4, name="fc6_1")(x)
    landmarks = layers.Dense(10, name="fc6_2")(x)
    probs = layers.Dense(2, activation="softmax", name="fc6_3")(x)
    return keras.Model(inp, [offsets, landmarks, probs], name="onet")


_BUILDERS = {"pnet": build_pnet, "rnet": build_rnet, "onet": build_onet}


def load_network(name: str) -> keras.Model:
    """Build ``"pnet"``, ``"rnet"`` or ``"onet"`` and set its pretrained weights."""
    model = _BUILDERS[name]()
    model.set_weights(load_weights(name))
    return model
