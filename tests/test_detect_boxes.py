"""Box maths of the cascade on small hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.detect import boxes as bx


def test_scale_pyramid_stops_before_the_short_side_falls_below_12():
    scales = bx.scale_pyramid(480, 640, min_face_size=20, scale_factor=0.709)
    assert scales[0] == pytest.approx(0.6)
    assert len(scales) == 10
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert bx.scale_pyramid(30, 30, min_face_size=40, scale_factor=0.709) == []


def test_scaled_size_truncates():
    assert bx.scaled_size(480, 640, 0.4254) == (204, 272)


def test_generate_boxes_places_windows_and_applies_offsets():
    probs = np.zeros((3, 4))
    probs[1, 2] = 0.9
    probs[2, 0] = 0.95
    probs[0, 0] = 0.5  # below the threshold
    offsets = np.zeros((3, 4, 4))
    offsets[1, 2] = [0.1, -0.1, 0.0, 0.5]
    boxes, scores = bx.generate_boxes(offsets, probs, scale=0.5, threshold=0.6)
    # best first: cell (row 2, col 0) is the window x 1..12, y 5..16 at scale 0.5
    assert scores.tolist() == [0.95, 0.9]
    assert boxes[0].tolist() == [2.0, 10.0, 24.0, 32.0]
    # cell (row 1, col 2): window x 5..16, y 3..14, corners moved by offsets * 11
    assert np.allclose(boxes[1], [(5 + 1.1) * 2, (3 - 1.1) * 2, 16 * 2, (14 + 5.5) * 2])
    empty_boxes, empty_scores = bx.generate_boxes(offsets, probs, 1.0, 0.99)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


def test_iou_union_and_min():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 5, 5], [20, 20, 30, 30]])
    assert np.allclose(bx.iou(a, b), [[50 / 150, 25 / 100, 0.0]])
    assert np.allclose(bx.iou(a, b, "min"), [[50 / 100, 25 / 25, 0.0]])
    with pytest.raises(ValueError):
        bx.iou(a, b, "max")


def test_nms_drops_boxes_overlapped_by_any_better_box():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [4.5, 0, 14.5, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # IoU(0,1) = 80/120 = 0.67: 1 goes. IoU(0,2) = 55/145 = 0.38, but IoU(1,2) = 75/125
    # = 0.6 > 0.5: 2 goes too, although 1 was itself dropped (ipazc/mtcnn's rule).
    assert bx.nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert bx.nms(boxes, scores, 0.65).tolist() == [0, 2, 3]
    assert bx.nms(boxes, scores, 0.7).tolist() == [0, 1, 2, 3]
    # order follows the scores, not the input
    assert bx.nms(boxes, scores[::-1].copy(), 0.7).tolist() == [3, 2, 1, 0]
    # ranked: the given order is the ranking
    assert bx.nms(boxes[::-1], scores, 0.5, ranked=True).tolist() == [0, 1]
    assert bx.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_in_blocks_equals_the_full_matrix(rng):
    xy = rng.uniform(0, 300, (2500, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 40, (2500, 2))], axis=1)
    scores = rng.uniform(size=2500)
    order = np.argsort(scores)[::-1]
    over = np.triu(bx.iou(boxes[order], boxes[order]) > 0.3, k=1).any(axis=0)
    assert bx.nms(boxes, scores, 0.3).tolist() == order[~over].tolist()


def test_nms_min_suppresses_a_box_inside_another():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], float)
    scores = np.array([0.9, 0.8])
    assert bx.nms(boxes, scores, 0.7, "union").tolist() == [0, 1]
    assert bx.nms(boxes, scores, 0.7, "min").tolist() == [0]


def test_batched_nms_keeps_groups_apart():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    groups = np.array([0, 1, 0])
    assert sorted(bx.batched_nms(boxes, scores, groups, 0.5).tolist()) == [0, 1]


def test_regress_boxes_uses_inclusive_sides():
    boxes = np.array([[10.0, 20.0, 19.0, 39.0]])  # 10 wide, 20 high (inclusive)
    offsets = np.array([[0.1, -0.1, 0.2, 0.5]])
    assert np.allclose(bx.regress_boxes(boxes, offsets), [[11.0, 18.0, 21.0, 49.0]])


def test_square_boxes_grow_the_short_side_about_the_centre():
    boxes = np.array([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 8.0, 4.0]])
    assert np.allclose(bx.square_boxes(boxes), [[5.0, 10.0, 25.0, 30.0], [0.0, -2.0, 8.0, 6.0]])


def test_clip_boxes_to_the_pixel_grid():
    boxes = np.array([[-5.0, 3.0, 120.0, 90.0]])
    assert bx.clip_boxes(boxes, height=80, width=100).tolist() == [[0.0, 3.0, 99.0, 79.0]]


def test_landmarks_to_image():
    boxes = np.array([[10.0, 20.0, 19.0, 29.0]])  # 10 x 10 pixels
    rel = np.array([[0.0, 0.5, 1.0, 0.2, 0.8, 0.0, 0.1, 0.5, 0.9, 1.0]])
    pts = bx.landmarks_to_image(boxes, rel)
    assert pts.shape == (1, 5, 2)
    assert np.allclose(pts[0, :, 0], [9, 14, 19, 11, 17])
    assert np.allclose(pts[0, :, 1], [19, 20, 24, 28, 29])


def test_crop_patches_samples_bilinearly_and_pads_outside():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)  # value = 4 y + x
    # boxes are scaled by (W - 1) / W before sampling, as crop_and_resize on box / W
    same = bx.crop_patches(image, np.array([[0.0, 0.0, 4.0, 4.0]]), np.array([0]), 4)
    assert np.allclose(same[0, :, :, 0], image[0, :, :, 0])
    mid = bx.crop_patches(image, np.array([[0.0, 0.0, 4.0, 4.0]]), np.array([0]), 3)
    grid = np.array([0.0, 1.5, 3.0])
    assert np.allclose(mid[0, :, :, 0], 4 * grid[:, None] + grid[None, :])
    # the left half of the box lies outside the image: those samples read the fill value
    out = bx.crop_patches(image, np.array([[-4.0, 0.0, 4.0, 4.0]]), np.array([0]), 3, fill=-1.0)
    assert np.allclose(out[0, :, :, 0], [[-1, 0, 3], [-1, 6, 9], [-1, 12, 15]])
    assert bx.crop_patches(image, np.zeros((0, 4)), np.zeros(0, int), 24).shape == (0, 24, 24, 1)


def test_crop_patches_reads_uint8_frames_and_each_box_from_its_own_image():
    # The detector passes its uint8 frames as they are (no float copy of the frame): the
    # patches are those of the float image, and each box samples the image it belongs to.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    boxes = np.array([[2.5, 3.0, 20.0, 25.5], [-5.0, 10.0, 38.0, 29.0], [2.5, 3.0, 20.0, 25.5]])
    index = np.array([0, 1, 1])
    from_uint8 = bx.crop_patches(frames, boxes, index, 24)
    from_float = bx.crop_patches(frames.astype(np.float32), boxes, index, 24)
    assert from_uint8.dtype == np.float32 and from_uint8.shape == (3, 24, 24, 3)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-4)
    assert np.abs(from_uint8[0] - from_uint8[2]).max() > 10  # same box, the other image
    np.testing.assert_allclose(from_uint8[2], bx.crop_patches(frames[1:], boxes[:1], np.array([0]), 24)[0], atol=1e-4)


def test_pnet_output_size():
    assert bx.pnet_output_size(144, 256) == (67, 123)  # as P-Net computes it (valid convs, pool "same")
    assert bx.pnet_output_size(12, 13) == (1, 2)
    assert bx.pnet_output_size(11, 40) == (1, 15)  # the last cell reads the pool padding
    assert bx.pnet_output_size(10, 40) == (0, 15)
