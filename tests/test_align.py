"""Alignment functions: facenet crop, 5-point similarity transform, main-face choice."""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.detect import Detection, align_face, crop_face, landmark_template, pick_main_face, similarity_align
from facelivenet.errors import AlignmentError, InputError


def _det(box, score=0.99, landmarks=None):
    return Detection(tuple(float(v) for v in box), score, np.zeros((5, 2), np.float32) if landmarks is None else landmarks)


def test_crop_face_adds_the_margin_in_output_pixels():
    image = np.zeros((400, 400, 3), np.uint8)
    image[100:200, 100:200] = 255  # the "face": a white 100x100 square
    crop = crop_face(image, (100, 100, 200, 200), image_size=160, margin=32)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
    white = np.nonzero(crop[:, :, 0] > 127)
    # 16 px of margin each side: the square fills about [16, 144)
    assert abs(white[0].min() - 16) <= 1 and abs(white[0].max() - 143) <= 1
    assert abs(white[1].min() - 16) <= 1 and abs(white[1].max() - 143) <= 1


def test_crop_face_clips_to_the_image():
    image = np.full((100, 100, 3), 7, np.uint8)
    crop = crop_face(image, (-20, -20, 50, 50), image_size=80, margin=0)
    assert crop.shape == (80, 80, 3) and np.all(crop == 7)
    with pytest.raises(AlignmentError):
        crop_face(image, (200, 200, 300, 300), image_size=80)
    with pytest.raises(InputError):
        crop_face(image, (0, 0, 50, 50), image_size=80, margin=80)


def test_similarity_align_moves_landmarks_onto_the_template():
    size = 112
    template = landmark_template(size)
    # a source image where the template appears scaled x2, rotated 30 deg, shifted
    angle = np.deg2rad(30)
    rot = 2.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src_pts = template @ rot.T + np.array([150.0, 60.0])
    image = np.zeros((400, 400, 3), np.uint8)
    for k, (x, y) in enumerate(src_pts):
        image[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 50 * (k + 1)
    out = similarity_align(image, src_pts, image_size=size)
    assert out.shape == (size, size, 3)
    for k, (x, y) in enumerate(template):
        assert abs(int(out[int(round(y)), int(round(x)), 0]) - 50 * (k + 1)) <= 5


def test_similarity_template_scales_with_the_size():
    assert np.allclose(landmark_template(224), 2 * landmark_template(112))
    left_eye, right_eye = landmark_template(160)[:2]
    assert left_eye[0] < right_eye[0]


def test_degenerate_landmarks_are_an_alignment_error():
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(AlignmentError):
        similarity_align(image, np.full((5, 2), 10.0), 112)
    with pytest.raises(AlignmentError):
        similarity_align(image, np.zeros((4, 2)), 112)


def test_align_face_picks_the_mode():
    image = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    pts = landmark_template(100) + 50
    det = _det((50, 50, 150, 150), landmarks=pts)
    assert np.array_equal(align_face(image, det, 100, "crop", 0), crop_face(image, det.box, 100, 0))
    assert np.array_equal(align_face(image, det, 100, "similarity"), similarity_align(image, pts, 100))
    with pytest.raises(InputError):
        align_face(image, det, 100, "affine")


def test_pick_main_face_prefers_large_central_sure_faces():
    shape = (200, 300, 3)
    central = _det((130, 80, 170, 120))
    big_corner = _det((0, 0, 60, 60))
    assert pick_main_face([big_corner, central], shape) is central
    huge = _det((40, 20, 260, 190))
    assert pick_main_face([central, huge], shape) is huge
    doubtful = _det((135, 85, 165, 115), score=0.8)
    assert pick_main_face([doubtful, big_corner], shape) is big_corner
    assert pick_main_face([doubtful], shape) is doubtful
    assert pick_main_face([], shape) is None
