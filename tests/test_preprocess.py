import numpy as np
import pytest
from keras import ops

from facelivenet.errors import ConfigError, InputError
from facelivenet.preprocess import prepare_faces, resize_face, standardize, to_rgb


def test_fixed_standardization_hand_values():
    x = np.array([0, 127.5, 255, 64], np.float32).reshape(1, 2, 2, 1)
    out = ops.convert_to_numpy(standardize(x, "fixed")).ravel()
    np.testing.assert_allclose(out, [-127.5 / 128, 0.0, 127.5 / 128, -63.5 / 128], rtol=1e-6)


def test_per_image_standardization_hand_values():
    # One image with pixels 0, 2, 4, 6: mean 3, population std sqrt(5).
    x = np.array([0, 2, 4, 6], np.float32).reshape(1, 2, 2, 1)
    out = ops.convert_to_numpy(standardize(x, "per_image")).ravel()
    np.testing.assert_allclose(out, (np.array([0, 2, 4, 6]) - 3) / np.sqrt(5), rtol=1e-5)


def test_per_image_standardization_of_a_flat_image_uses_the_floor():
    # std 0 → divided by 1/sqrt(N) = 1/2 for N = 4: (x - mean) * 2 = 0.
    x = np.full((2, 2, 2, 1), 9, np.uint8)
    out = ops.convert_to_numpy(standardize(x, "per_image"))
    assert np.all(np.isfinite(out)) and np.all(out == 0)


def test_per_image_is_per_image():
    a = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    both = ops.convert_to_numpy(standardize(np.concatenate([a, a * 10 + 5]), "per_image"))
    np.testing.assert_allclose(both[0], both[1], rtol=1e-5, atol=1e-6)


def test_fixed_grey_standardization_hand_values():
    x = np.array([[[[255, 0, 0], [0, 0, 255]]]], np.uint8)          # (1, 1, 2, 3): red, blue
    got = np.asarray(standardize(x, "fixed_grey"))
    expected = (np.array([0.299 * 255, 0.114 * 255]) - 127.5) / 128
    np.testing.assert_allclose(got, np.repeat(expected[None, None, :, None], 3, axis=-1), atol=1e-5)
    grey = np.full((1, 2, 2, 3), 90, np.uint8)                      # grey stays grey
    np.testing.assert_allclose(np.asarray(standardize(grey, "fixed_grey")), (90 - 127.5) / 128, atol=1e-5)


def test_unknown_standardization():
    with pytest.raises(ConfigError, match="unknown standardization"):
        standardize(np.zeros((1, 2, 2, 3)), "zscore")


def test_to_rgb_layouts():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_rgb(grey)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[..., 0] == grey) and np.all(rgb[..., 2] == grey)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 7
    rgba[..., 3] = 255
    assert to_rgb(rgba).shape == (2, 2, 3) and np.all(to_rgb(rgba)[..., 1] == 7)
    sixteen = np.full((2, 2), 0xFF00, np.uint16)
    assert np.all(to_rgb(sixteen) == 0xFF)
    with pytest.raises(InputError, match="shape"):
        to_rgb(np.zeros((2, 2, 5), np.uint8))


def test_resize_and_prepare():
    face = np.zeros((50, 40, 3), np.uint8)
    assert resize_face(face, 80).shape == (80, 80, 3)
    batch = prepare_faces([face, np.zeros((100, 100), np.uint8)], 80)
    assert batch.shape == (2, 80, 80, 3) and batch.dtype == np.uint8
    ready = np.zeros((3, 80, 80, 3), np.uint8)
    assert prepare_faces(ready, 80) is ready
    assert prepare_faces([], 80).shape == (0, 80, 80, 3)
