"""The tf.data pipeline: shapes, grey → RGB, raw pixels, seeded augmentation, mid-epoch start."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facelivenet.data import tfdata


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        p = tmp_path / f"{i}.png"
        if i % 2:
            Image.fromarray(rng.integers(0, 255, (30, 26), dtype=np.uint8), "L").save(p)   # grey
        else:
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
    return paths


def collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_training_batches_shapes_dtype_and_grey_to_rgb(images):
    labels = np.arange(10)
    x, y = collect(tfdata.training_dataset(images, labels, image_size=16, batch_size=4, seed=1, epoch=0))
    assert x.shape == (8, 16, 16, 3) and x.dtype == np.uint8      # 2 full batches, remainder dropped
    assert sorted(y.tolist()) == sorted(tfdata.epoch_order(10, 1, 0)[:8].tolist())
    for img, label in zip(x, y):
        if label % 2:   # grey source: three equal channels
            assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert x.max() > 200                                             # raw pixels, not standardised


def test_seeded_and_epoch_dependent(images):
    labels = np.arange(10)
    kw = dict(image_size=16, batch_size=5)
    a = collect(tfdata.training_dataset(images, labels, seed=1, epoch=0, **kw))
    b = collect(tfdata.training_dataset(images, labels, seed=1, epoch=0, **kw))
    c = collect(tfdata.training_dataset(images, labels, seed=1, epoch=1, **kw))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1]) or not np.array_equal(a[0], c[0])


def test_skip_batches_resumes_the_same_epoch(images):
    labels = np.arange(10)
    kw = dict(image_size=16, batch_size=3, seed=4, epoch=2)
    full = collect(tfdata.training_dataset(images, labels, **kw))
    rest = collect(tfdata.training_dataset(images, labels, skip_batches=1, **kw))
    np.testing.assert_array_equal(full[0][3:], rest[0])
    np.testing.assert_array_equal(full[1][3:], rest[1])


def test_random_crop_and_flip_vary(images):
    # the same image repeated: crops/flips differ by position
    x, _ = collect(tfdata.training_dataset([images[0]] * 8, np.zeros(8), image_size=32, batch_size=8, seed=0, epoch=0))
    assert len({img.tobytes() for img in x}) > 1
    x, _ = collect(tfdata.training_dataset([images[0]] * 4, np.zeros(4), image_size=32, batch_size=4, seed=0,
                                           epoch=0, random_crop=False, flip=False))
    assert len({img.tobytes() for img in x}) == 1


def test_multi_column_labels_and_eval(images):
    labels = np.stack([np.arange(10), np.arange(10) * 2], axis=1)
    x, y = collect(tfdata.training_dataset(images, labels, image_size=16, batch_size=5, seed=0, epoch=0))
    np.testing.assert_array_equal(y[:, 1], y[:, 0] * 2)
    ev = np.concatenate([b.numpy() for b in tfdata.eval_dataset(images, image_size=16, batch_size=4)])
    assert ev.shape == (10, 16, 16, 3)


def test_too_few_images(images):
    from facelivenet.errors import DatasetError

    with pytest.raises(DatasetError, match="fewer than one batch"):
        tfdata.training_dataset(images, np.arange(10), image_size=16, batch_size=11, seed=0, epoch=0)


def test_load_size():
    assert tfdata.load_size(160) == 182
