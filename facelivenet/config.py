"""Frozen configuration of the two-branch network.

A :class:`NetworkConfig` is everything needed to rebuild a model and use it: the
architecture (depths, widths of the heads), the input geometry and standardisation,
the expression class names and the verification threshold. It is stored inside every
saved ``.keras`` file (see :mod:`facelivenet.models.io`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from facelivenet.errors import ConfigError

#: Block depths (N35, N17, N8) of the Inception-ResNet-v1 presets. ``full`` is the
#: facenet layout; ``simple`` is the light layout of the FaceLiveNet reference demo.
PRESETS: dict[str, tuple[int, int, int]] = {
    "full": (5, 10, 5),
    "simple": (1, 1, 1),
}

#: Expression classes in FER2013's order (DESIGN.md §6), in lower case.
FER2013_CLASSES: tuple[str, ...] = (
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
)

#: Face standardisations a model can be trained with (see facelivenet.preprocess).
STANDARDIZATIONS: tuple[str, ...] = ("fixed", "per_image", "fixed_grey")

#: Face alignments the pipeline can use before the network (see the detector).
ALIGNMENTS: tuple[str, ...] = ("crop", "similarity")

#: Longest side of the frame the detector sees during authentication by default. A
#: person authenticating faces the camera, so the face is large; detecting on a 640x480
#: frame halved is ~4x faster and still finds faces from 40 px (min face 20 at half
#: scale) with boxes within a few pixels. Crops are always cut from the full frame.
DETECT_MAX_SIDE = 320


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture, preprocessing and decision settings of one model.

    Attributes:
        preset: name of the depth preset the depths came from, or ``"custom"``.
        depths: (N35, N17, N8) block repetitions.
        width: multiplier of every convolution's filter count (1.0 = facenet's widths;
            e.g. 0.28 with the simple depths gives 1.36M parameters, about the ICPR
            paper's 1.31M).
        embedding_size: size of the L2-normalised identity embedding.
        image_size: side of the square RGB input in pixels.
        expression_classes: expression class names, in logit order.
        expression_hidden: width of branch 2's dense layer before the logits.
        dropout: dropout rate before the bottleneck layers (training only).
        weight_decay: L2 factor on every kernel; enters ``model.losses``.
        standardization: ``"fixed"`` ((x-127.5)/128) or ``"per_image"`` (prewhiten).
        alignment: how faces are cut out of frames: ``"crop"`` (box + margin) or
            ``"similarity"`` (5-point similarity transform).
        margin: pixels of margin around the box for ``"crop"`` alignment, at
            ``image_size`` scale.
        verification_threshold: squared L2 distance between unit embeddings at or
            below which two faces are the same identity (0..4).
        expression_threshold: probability at or above which an expression counts
            as shown.
        neutral_threshold: probability of Neutral at or above which a frame shows
            Neutral, Neutral being the most probable class (the challenge's start
            state); ``None``: ``expression_threshold``. Calibrated on held-out faces
            by ``facelivenet calibrate-neutral``.
    """

    preset: str = "simple"
    depths: tuple[int, int, int] = PRESETS["simple"]
    width: float = 1.0
    embedding_size: int = 512
    image_size: int = 160
    expression_classes: tuple[str, ...] = FER2013_CLASSES
    expression_hidden: int = 128
    dropout: float = 0.5
    weight_decay: float = 5e-5
    standardization: str = "fixed"
    alignment: str = "crop"
    margin: int = 32
    verification_threshold: float = 1.1
    expression_threshold: float = 0.5
    neutral_threshold: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(
            self, "expression_classes", tuple(str(c) for c in self.expression_classes)
        )
        if len(self.depths) != 3 or min(self.depths) < 0:
            raise ConfigError(f"depths must be three counts >= 0. Received: depths={self.depths}")
        if not 0.0 < self.width <= 4.0:
            raise ConfigError(f"width must be in (0, 4]. Received: width={self.width}")
        if self.embedding_size < 1:
            raise ConfigError(f"embedding_size must be >= 1. Received: embedding_size={self.embedding_size}")
        if self.image_size < 75:
            # Below 75 px the valid convolutions and three stride-2 reductions leave no grid.
            raise ConfigError(f"image_size must be >= 75. Received: image_size={self.image_size}")
        if len(self.expression_classes) < 2:
            raise ConfigError(
                f"need at least 2 expression classes. Received: {list(self.expression_classes)}"
            )
        if len(set(self.expression_classes)) != len(self.expression_classes):
            raise ConfigError(
                f"expression classes must be distinct. Received: {list(self.expression_classes)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1). Received: dropout={self.dropout}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0. Received: weight_decay={self.weight_decay}")
        if self.standardization not in STANDARDIZATIONS:
            raise ConfigError(
                f"standardization must be one of {STANDARDIZATIONS}. "
                f"Received: standardization={self.standardization!r}"
            )
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(
                f"alignment must be one of {ALIGNMENTS}. Received: alignment={self.alignment!r}"
            )
        if not 0.0 <= self.verification_threshold <= 4.0:
            raise ConfigError(
                "verification_threshold is a squared distance between unit vectors, in [0, 4]. "
                f"Received: {self.verification_threshold}"
            )
        if not 0.0 < self.expression_threshold <= 1.0:
            raise ConfigError(
                f"expression_threshold must be in (0, 1]. Received: {self.expression_threshold}"
            )
        if self.neutral_threshold is not None and not 0.0 < self.neutral_threshold <= 1.0:
            raise ConfigError(
                f"neutral_threshold must be in (0, 1] or None. Received: {self.neutral_threshold}"
            )

    @classmethod
    def from_preset(cls, preset: str = "simple", **overrides: Any) -> "NetworkConfig":
        """Config with the depths of a named preset (``full`` or ``simple``)."""
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return cls(preset=preset, depths=PRESETS[preset], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["depths"] = list(self.depths)
        out["expression_classes"] = list(self.expression_classes)
        if out["neutral_threshold"] is None:
            # Added after models shipped: left out at its default, so that a model without
            # one keeps its dict, and so its fingerprint and the galleries tied to it.
            del out["neutral_threshold"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NetworkConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown network config keys: {unknown}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "NetworkConfig":
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
