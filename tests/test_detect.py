"""The Keras MTCNN and the FaceDetector facade on a public-domain portrait.

``skimage.data.astronaut()`` (Eileen Collins, NASA, public domain) is a 512x512 RGB
photo with one clear face at about (181, 64)-(265, 171).
"""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.detect import LANDMARK_NAMES, Detection, FaceDetector, boxes as bx
from facelivenet.errors import InputError

ASTRONAUT_FACE = (181.0, 64.0, 265.0, 171.0)


@pytest.fixture(scope="module")
def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector().load()


def _iou(a, b) -> float:
    return float(bx.iou(np.array([a]), np.array([b]))[0, 0])


def test_networks_load_the_pretrained_weights_and_have_the_documented_shapes():
    from facelivenet.detect.mtcnn_nets import load_network
    from facelivenet.detect.weights import load_weights

    pnet, rnet, onet = (load_network(n) for n in ("pnet", "rnet", "onet"))
    assert len(pnet.weights) == len(load_weights("pnet")) == 13
    x = np.zeros((2, 37, 53, 3), np.float32)
    offsets, probs = (np.asarray(t) for t in pnet(x))
    assert offsets.shape == (2, 14, 22, 4) and probs.shape == (2, 14, 22, 2)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert [tuple(t.shape) for t in rnet(np.zeros((3, 24, 24, 3)))] == [(3, 4), (3, 2)]
    assert [tuple(t.shape) for t in onet(np.zeros((3, 48, 48, 3)))] == [(3, 4), (3, 10), (3, 2)]


def test_compiled_crop_matches_the_numpy_reference(astronaut):
    import tensorflow as tf

    from facelivenet.detect.compiled import _normalized_boxes

    boxes = np.array([[100.5, 50.25, 300.0, 260.75], [-40.0, 400.0, 60.0, 560.0]])
    ref = bx.crop_patches(astronaut[None], boxes, np.array([0, 0]), 24)
    got = tf.image.crop_and_resize(
        astronaut[None], _normalized_boxes(boxes, 512, 512), np.array([0, 0], np.int32), (24, 24),
        extrapolation_value=127.5,
    ).numpy()
    assert np.abs(got - ref).max() < 0.05


def test_finds_the_astronaut_with_landmarks_in_order(detector, astronaut):
    faces = detector.detect(astronaut)
    assert faces and isinstance(faces[0], Detection)
    face = faces[0]
    assert face.score > 0.99
    assert _iou(face.box, ASTRONAUT_FACE) > 0.85
    assert all(isinstance(v, float) for v in face.box)
    assert face.landmarks.shape == (5, 2) and len(LANDMARK_NAMES) == 5
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < nx < rex and mlx < mrx  # left/right as seen in the image
    assert max(ley, rey) < ny < min(mly, mry)
    x1, y1, x2, y2 = face.box
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_grey_and_rgba_inputs_are_converted(detector, astronaut):
    grey = (astronaut @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert _iou(detector.detect(grey)[0].box, ASTRONAUT_FACE) > 0.8
    assert _iou(detector.detect(grey[:, :, None])[0].box, ASTRONAUT_FACE) > 0.8
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert detector.detect(rgba)[0].box == detector.detect(astronaut)[0].box


@pytest.mark.parametrize(
    "bad",
    [np.zeros((20, 20, 3), np.float32), np.zeros((20, 20, 2), np.uint8), np.zeros((2, 20, 20, 3), np.uint8),
     np.zeros((0, 20, 3), np.uint8)],
)
def test_other_inputs_are_rejected(detector, bad):
    with pytest.raises(InputError):
        detector.detect(bad)


def test_no_face_gives_an_empty_list(detector):
    assert detector.detect(np.full((120, 160, 3), 90, np.uint8)) == []
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) == []  # smaller than any face


def test_detect_batch_equals_detect_per_frame(detector, astronaut):
    blank = np.full((120, 160, 3), 90, np.uint8)
    half = astronaut[::2, ::2].copy()
    frames = [astronaut, blank, half, astronaut]
    batch = detector.detect_batch(frames)
    assert len(batch) == 4 and batch[1] == []
    assert detector.detect_batch([]) == []
    assert len(detector.detect_batch(np.stack([blank, blank]))) == 2
    with pytest.raises(InputError):
        detector.detect_batch(astronaut)  # one image, not a batch
    for frame, found in zip(frames, batch):
        single = detector.detect(frame)
        assert len(found) == len(single)
        assert np.allclose([f.box for f in found], [f.box for f in single], atol=1e-3)


def test_downscaled_detection_maps_back_to_input_pixels(detector, astronaut):
    full = detector.detect(astronaut)[0]
    small = detector.detect(astronaut, downscale=2.0)[0]
    assert _iou(small.box, full.box) > 0.8
    assert np.abs(small.landmarks - full.landmarks).max() < 8
    with pytest.raises(InputError):
        detector.detect(astronaut, downscale=0.5)


def test_min_face_size_filters_small_faces(astronaut):
    assert FaceDetector(min_face_size=300).detect(astronaut) == []  # the face is ~90 px


@pytest.mark.parametrize(
    "kwargs",
    [dict(min_face_size=5), dict(thresholds=(0.6, 0.7)), dict(thresholds=(0.6, 0.7, 1.5)), dict(scale_factor=1.2)],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(InputError):
        FaceDetector(**kwargs)


def test_detection_to_dict_is_json_ready(detector, astronaut):
    import json

    d = detector.detect(astronaut)[0].to_dict()
    assert set(d) == {"box", "score", "landmarks"} and len(d["landmarks"]) == 5
    json.dumps(d)


def test_pyramid_call_equals_one_network_call_per_level(detector, astronaut):
    import tensorflow as tf

    from facelivenet.detect.mtcnn_nets import MEAN, SCALE, load_network

    sizes = [(300, 290), (37, 53), (12, 12)]
    flat_offsets, flat_probs = detector._stages[0].runners.pnet(astronaut, sizes)
    pnet, start = load_network("pnet"), 0
    for h, w in sizes:
        scaled = tf.image.resize(astronaut[None], (h, w), method="area")
        offsets, probs = (np.asarray(t)[0] for t in pnet((scaled - MEAN) * SCALE))
        oh, ow = bx.pnet_output_size(h, w)
        assert offsets.shape[:2] == (oh, ow)
        n = oh * ow
        assert np.allclose(flat_offsets[start : start + n], offsets.reshape(-1, 4), atol=1e-5)
        assert np.allclose(flat_probs[start : start + n], probs[..., 1].reshape(-1), atol=1e-5)
        start += n
    assert start == len(flat_probs) == len(flat_offsets)


def test_eager_runners_agree_with_the_compiled_ones(detector, astronaut):
    """The backend-neutral path (OpenCV resize, numpy crops, eager calls) finds the same face."""
    from facelivenet.detect.compiled import _eager_runners
    from facelivenet.detect.mtcnn_nets import load_network
    from facelivenet.detect.stages import ONetStage, PNetStage, RNetStage

    eager = _eager_runners(*(load_network(n) for n in ("pnet", "rnet", "onet")))
    compiled = detector._stages[0].runners
    sizes = [(307, 307), (61, 61)]
    (o1, p1), (o2, p2) = eager.pnet(astronaut, sizes), compiled.pnet(astronaut, sizes)
    assert o1.shape == o2.shape and np.abs(p1 - p2).max() < 0.01
    face = detector.detect(astronaut)[0]
    box = np.array([face.box])
    for a, b in zip(eager.onet(astronaut[None], box, [0]), compiled.onet(astronaut[None], box, [0])):
        assert np.abs(a - b).max() < 1e-3
    batch, scales = astronaut[None], bx.scale_pyramid(512, 512, 20, 0.709)
    found = ONetStage(eager)(batch, RNetStage(eager)(batch, PNetStage(eager)(batch, scales)))
    assert _iou(found.boxes[np.argmax(found.scores)], face.box) > 0.9
