"""Box maths of the MTCNN cascade: plain numpy functions, no state.

Conventions: a box is ``(x1, y1, x2, y2)`` in pixel coordinates of the image it was
found in, with x to the right and y down; ``boxes`` arrays are (N, 4) float. As in the
original MTCNN (and ipazc/mtcnn, whose weights we use), box regression treats the
corners as inclusive pixel positions (a box spans ``x2 - x1 + 1`` pixels) while
overlaps use the continuous areas ``(x2 - x1) * (y2 - y1)``.
"""

from __future__ import annotations

import math

import numpy as np

#: P-Net looks at 12x12 windows with a stride of 2 (one pooling layer).
PNET_CELL = 12
PNET_STRIDE = 2


def scale_pyramid(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales at which P-Net sees the image so faces >= ``min_face_size`` fill its 12 px window.

    The first scale is ``12 / min_face_size``; each next one is ``scale_factor`` times
    smaller, while the shorter image side stays >= 12 px.

    Returns:
        list of S floats (empty when the image is too small for ``min_face_size``).
    """
    scales = []
    scale = PNET_CELL / float(min_face_size)
    min_side = min(height, width)
    while min_side * scale >= PNET_CELL:
        scales.append(scale)
        scale *= scale_factor
    return scales


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(h, w) of the image resized by ``scale`` (truncated, as ipazc/mtcnn does)."""
    return int(math.floor(height * scale)), int(math.floor(width * scale))


def generate_boxes(
    offsets: np.ndarray, probs: np.ndarray, scale: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes from one P-Net output map, in pixels of the unscaled image.

    Output cell (row i, column j) stands for the window ``x in [2j + 1, 2j + 12]``,
    ``y in [2i + 1, 2i + 12]`` of the scaled image (the 1-based corners of the original
    MTCNN, kept by ipazc/mtcnn); each corner moves by its offset times the window side
    (11), and the box is divided by ``scale``.

    Args:
        offsets: (h, w, 4) regression map (dx1, dy1, dx2, dy2).
        probs: (h, w) face probability map.
        scale: the scale the image was resized by before P-Net.
        threshold: keep cells with probability > threshold.

    Returns:
        boxes (K, 4) float64, scores (K,) float64, sorted by descending score.
    """
    ys, xs = np.nonzero(probs > threshold)
    if ys.size == 0:
        return np.zeros((0, 4)), np.zeros((0,))
    scores = probs[ys, xs].astype(np.float64)
    corner = np.stack([xs, ys, xs, ys], axis=1).astype(np.float64) * PNET_STRIDE
    corner[:, :2] += 1
    corner[:, 2:] += PNET_CELL
    boxes = (corner + offsets[ys, xs].astype(np.float64) * (PNET_CELL - 1)) / scale
    order = descending(scores)
    return boxes[order], scores[order]


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) → (N,) continuous areas, 0 for degenerate boxes."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray, method: str = "union") -> np.ndarray:
    """Pairwise overlap of (N, 4) and (M, 4) boxes → (N, M).

    ``method="union"``: intersection / union (IoU); ``"min"``: intersection / smaller area.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a, area_b = box_areas(a)[:, None], box_areas(b)[None, :]
    if method == "union":
        denom = area_a + area_b - inter
    elif method == "min":
        denom = np.minimum(area_a, area_b)
    else:
        raise ValueError(f"method must be 'union' or 'min'. Received: method={method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)


def descending(scores: np.ndarray) -> np.ndarray:
    """(N,) → (N,) indices that sort ``scores`` from best to worst.

    ``argsort(scores)[::-1]``, the order ipazc/mtcnn uses: many scores saturate at
    exactly 1.0 in float32, and the order of such ties decides which box survives NMS.
    """
    return np.argsort(np.asarray(scores))[::-1]


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union", *, ranked: bool = False
) -> np.ndarray:
    """Non-maximum suppression: drop every box that a better one overlaps too much.

    A box is dropped when any better-scored box overlaps it (see :func:`iou`) by more
    than ``threshold``, whether or not that better box is itself dropped. This is the
    rule of ipazc/mtcnn, whose weights we use and whose faces we reproduce; the greedy
    variant (only kept boxes suppress) keeps a few more candidates and so, after the
    later stages' regression, moves final boxes by a pixel or two.

    Args:
        boxes: (N, 4); scores: (N,).
        ranked: the boxes are already sorted best first (as :func:`generate_boxes`
            returns them); keep that order instead of sorting again.

    Returns:
        (K,) int64 indices into ``boxes`` of the kept boxes, best first (ties in the
        order of :func:`descending`).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.arange(len(boxes)) if ranked else descending(scores)
    ranked = boxes[order]
    n = len(order)
    dropped = np.zeros(n, dtype=bool)
    for start in range(0, n, _NMS_BLOCK):  # bounded memory: a block of rows at a time
        stop = min(start + _NMS_BLOCK, n)
        over = iou(ranked[start:stop], ranked[start:], method) > threshold
        # row r (box start + r) may only suppress later boxes: columns > r
        over &= np.arange(n - start)[None, :] > np.arange(stop - start)[:, None]
        dropped[start:] |= over.any(axis=0)
    return order[~dropped].astype(np.int64)


#: Rows of the overlap matrix computed at once in :func:`nms`.
_NMS_BLOCK = 1024


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, method: str = "union"
) -> np.ndarray:
    """:func:`nms` run independently within each group (e.g. image) in one pass.

    Boxes of different groups are moved apart so that they never overlap.

    Args:
        boxes: (N, 4); scores: (N,); groups: (N,) int group ids.

    Returns:
        (K,) int64 indices of the kept boxes, best first.
    """
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes + (np.asarray(groups, dtype=np.float64) * 2.0 * span)[:, None]
    return nms(shifted, scores, threshold, method)


def regress_boxes(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply R-Net / O-Net box regression.

    Each corner moves by its offset times the box side in pixels
    (``x2 - x1 + 1`` wide, ``y2 - y1 + 1`` high).

    Args:
        boxes: (N, 4); offsets: (N, 4) as (dx1, dy1, dx2, dy2).

    Returns:
        (N, 4) new boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return boxes + np.asarray(offsets, dtype=np.float64) * np.stack([w, h, w, h], axis=1)


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of its longer side, about the same centre.

    Args:
        boxes: (N, 4).

    Returns:
        (N, 4) squares.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) * 0.5
    y1 = boxes[:, 1] + (h - side) * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip (N, 4) boxes to the pixel grid: x in [0, width - 1], y in [0, height - 1]."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    out[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
    out[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    return out


def landmarks_to_image(boxes: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """O-Net landmarks (relative to the box) → (N, 5, 2) pixel coordinates.

    Args:
        boxes: (N, 4), the boxes O-Net looked at (before its own regression).
        relative: (N, 10) as x1..x5, y1..y5 in box units.

    Returns:
        (N, 5, 2) points (x, y).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    relative = np.asarray(relative, dtype=np.float64)
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1.0
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1.0
    xs = relative[:, :5] * w + boxes[:, 0:1] - 1.0
    ys = relative[:, 5:] * h + boxes[:, 1:2] - 1.0
    return np.stack([xs, ys], axis=2)


def crop_patches(
    images: np.ndarray, boxes: np.ndarray, image_index: np.ndarray, size: int, fill: float = 127.5
) -> np.ndarray:
    """Sample each box of each image into a ``size`` x ``size`` patch (bilinear).

    The numpy reference of the compiled path, which is TensorFlow's
    ``crop_and_resize`` on boxes divided by the image size (as ipazc/mtcnn does): output
    pixel (i, j) samples the image at ``x = (x1 + j (x2 - x1) / (size - 1)) (W - 1) / W``
    (y likewise); samples outside the image read ``fill`` (the normalisation mean, so 0
    for the networks).

    Args:
        images: (B, H, W, C) array; boxes: (N, 4); image_index: (N,) ints into ``images``.

    Returns:
        (N, size, size, C) float32 patches.
    """
    images = np.asarray(images)
    _, height, width, channels = images.shape
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros((0, size, size, channels), np.float32)
    t = np.arange(size, dtype=np.float64) / max(size - 1, 1)
    xs = (boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t) * ((width - 1) / width)  # (N, S)
    ys = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t) * ((height - 1) / height)
    x0 = np.clip(np.floor(xs), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(ys), 0, height - 1).astype(np.int64)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx = (xs - np.floor(xs)).astype(np.float32)[:, None, :, None]
    fy = (ys - np.floor(ys)).astype(np.float32)[:, :, None, None]
    # The four neighbours of every sample, gathered from the image as it is (uint8 frames
    # stay uint8: converting the whole frame to float per call cost more than the rest)
    # through flat pixel indices, one gather for all four: (4, N, S, S, C).
    rows = np.asarray(image_index, dtype=np.int64)[:, None] * height
    r0, r1 = (rows + y0) * width, (rows + y1) * width  # (N, S)
    corners = np.stack([r0[:, :, None] + x0[:, None, :], r0[:, :, None] + x1[:, None, :],
                        r1[:, :, None] + x0[:, None, :], r1[:, :, None] + x1[:, None, :]])
    p00, p01, p10, p11 = np.take(images.reshape(-1, channels), corners, axis=0).astype(np.float32)
    top = p00 * (1 - fx) + p01 * fx
    bottom = p10 * (1 - fx) + p11 * fx
    out = top * (1 - fy) + bottom * fy
    outside = ((xs < 0) | (xs > width - 1))[:, None, :] | ((ys < 0) | (ys > height - 1))[:, :, None]
    out[outside] = fill
    return out


def pnet_output_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) of P-Net's output map for an input of height x width (0 below 11 px)."""

    def side(n: int) -> int:
        return max(0, -(-(n - 2) // 2) - 4)

    return side(height), side(width)

