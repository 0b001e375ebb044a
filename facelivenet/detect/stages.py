"""The three stages of the cascade, each a small object whose ``__call__`` is a recipe.

Stages pass :class:`Candidates` along: boxes of one or more images (all of one shape,
stacked in a batch) with their scores, and from O-Net on, landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facelivenet.detect import boxes as bx

if TYPE_CHECKING:  # compiled imports Keras; the ONNX runtime runs these stages without it
    from facelivenet.detect.compiled import CascadeRunners


@dataclass(frozen=True)
class Candidates:
    """Face candidates of a batch of images.

    Attributes:
        image_index: (N,) int, which image of the batch each candidate belongs to.
        boxes: (N, 4) float64 (x1, y1, x2, y2) in pixels of that image.
        scores: (N,) float64 face probability of the latest stage.
        landmarks: (N, 5, 2) float64 points, or None before O-Net.
    """

    image_index: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros((0,), np.int64), np.zeros((0, 4)), np.zeros((0,)))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, idx: np.ndarray) -> "Candidates":
        """The candidates at ``idx`` (an index or boolean array), in that order."""
        lm = None if self.landmarks is None else self.landmarks[idx]
        return Candidates(self.image_index[idx], self.boxes[idx], self.scores[idx], lm)

    @staticmethod
    def concat(parts: list["Candidates"]) -> "Candidates":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Candidates.empty()
        return Candidates(
            np.concatenate([p.image_index for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


@dataclass(frozen=True)
class PNetStage:
    """Proposals: P-Net over the image pyramid of every image.

    Attributes:
        threshold: keep P-Net cells with face probability above it.
        nms_scale: IoU above which proposals of one scale suppress each other.
        nms_all: IoU above which proposals of all scales suppress each other.
    """

    runners: CascadeRunners = field(repr=False)
    threshold: float = 0.6
    nms_scale: float = 0.5
    nms_all: float = 0.7

    def __call__(self, images: np.ndarray, scales: list[float]) -> Candidates:
        height, width = images.shape[1:3]
        sizes = [bx.scaled_size(height, width, s) for s in scales]
        maps = [bx.pnet_output_size(h, w) for h, w in sizes]
        ends = np.cumsum([h * w for h, w in maps])
        parts = []
        for i, image in enumerate(images):
            # 1. P-Net on every level of the pyramid (one compiled call).
            flat_offsets, flat_probs = self.runners.pnet(image, sizes)
            for scale, (h, w), end in zip(scales, maps, ends):
                offsets = flat_offsets[end - h * w : end].reshape(h, w, 4)
                probs = flat_probs[end - h * w : end].reshape(h, w)
                # 2. Cells above the threshold → regressed boxes in image pixels.
                boxes, scores = bx.generate_boxes(offsets, probs, scale, self.threshold)
                # 3. NMS within the scale.
                keep = bx.nms(boxes, scores, self.nms_scale, ranked=True)
                parts.append(Candidates(np.full(len(keep), i, np.int64), boxes[keep], scores[keep]))
        found = Candidates.concat(parts)
        # 4. NMS across scales, per image; 5. squares for the next stage.
        return _nms_then_square(found, self.nms_all)


def _nms_then_square(found: Candidates, overlap: float) -> Candidates:
    """Non-maximum suppression per image, then each kept box made square (P-Net, R-Net)."""
    found = found.take(bx.batched_nms(found.boxes, found.scores, found.image_index, overlap))
    return Candidates(found.image_index, bx.square_boxes(found.boxes), found.scores)


@dataclass(frozen=True)
class RNetStage:
    """Refinement: R-Net rescoring and regression of every proposal in one batch."""

    runners: CascadeRunners = field(repr=False)
    threshold: float = 0.7
    nms: float = 0.7

    def __call__(self, images: np.ndarray, found: Candidates) -> Candidates:
        if not len(found):
            return found
        # 1. R-Net on 24x24 patches of all candidates.
        offsets, probs = self.runners.rnet(images, found.boxes, found.image_index)
        # 2. New scores, regressed boxes; 3. threshold.
        keep = probs > self.threshold
        found = Candidates(
            found.image_index[keep], bx.regress_boxes(found.boxes[keep], offsets[keep]),
            probs[keep].astype(np.float64),
        )
        # 4. NMS per image; 5. squares for O-Net.
        return _nms_then_square(found, self.nms)


@dataclass(frozen=True)
class ONetStage:
    """Output: O-Net scores, final boxes and five landmarks."""

    runners: CascadeRunners = field(repr=False)
    threshold: float = 0.7
    nms: float = 0.7

    def __call__(self, images: np.ndarray, found: Candidates) -> Candidates:
        if not len(found):
            return found
        # 1. O-Net on 48x48 patches of all candidates.
        offsets, landmarks, probs = self.runners.onet(images, found.boxes, found.image_index)
        keep = probs > self.threshold
        # 2. Landmarks relative to the box O-Net saw; 3. regressed boxes; new scores.
        found = Candidates(
            found.image_index[keep],
            bx.regress_boxes(found.boxes[keep], offsets[keep]),
            probs[keep].astype(np.float64),
            bx.landmarks_to_image(found.boxes[keep], landmarks[keep]),
        )
        # 4. NMS per image, overlap relative to the smaller box.
        return found.take(bx.batched_nms(found.boxes, found.scores, found.image_index, self.nms, "min"))
