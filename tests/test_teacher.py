"""The identity teacher (dlib's descriptor, the [teacher] extra) and its cache."""

from __future__ import annotations

import numpy as np
import pytest

from facelivenet.detect.align import landmark_template
from facelivenet.train import teacher as tch

dlib = pytest.importorskip("dlib", reason="the [teacher] extra is not installed")


@pytest.fixture(scope="module")
def astronaut():
    from facelivenet.auth.demo import astronaut_photo
    from facelivenet.detect import FaceDetector, pick_main_face

    photo = astronaut_photo()
    face = pick_main_face(FaceDetector().detect(photo), photo.shape)
    return photo, face.landmarks


def test_chip_maps_the_landmarks_onto_the_teacher_template():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (150, 150, 3)).astype(np.uint8)
    # landmarks already where dlib's chip puts them: the chip is the image itself
    assert np.abs(tch.teacher_chip(image, tch.TEACHER_TEMPLATE_150).astype(int) - image).max() <= 1
    # the same face at twice the size, moved: the chip is that face scaled back
    big = np.kron(image, np.ones((2, 2, 1), np.uint8))
    framed = np.zeros((340, 340, 3), np.uint8)
    framed[20:320, 20:320] = big
    chip = tch.teacher_chip(framed, tch.TEACHER_TEMPLATE_150 * 2 + 20.5)
    assert chip.shape == (150, 150, 3)
    assert np.mean(np.abs(chip[10:-10, 10:-10].astype(int) - image[10:-10, 10:-10])) < 40


def test_teacher_tells_the_astronaut_from_other_faces(astronaut, tmp_path):
    photo, marks = astronaut
    t = tch.DlibTeacher()
    chip = tch.teacher_chip(photo, marks)
    shifted = tch.teacher_chip(photo, marks + np.array([2.0, -1.5], np.float32))  # another detection of her
    noise = np.random.default_rng(0).integers(0, 255, chip.shape).astype(np.uint8)
    e = t.embed([chip, shifted, np.ascontiguousarray(chip[:, ::-1]), noise])
    assert e.shape == (4, 128)
    same = np.linalg.norm(e[0] - e[1])
    mirrored = np.linalg.norm(e[0] - e[2])
    other = np.linalg.norm(e[0] - e[3])
    assert same < 0.3 and mirrored < 0.45 < other                 # dlib's same-person rule: distance < 0.6


def test_cache_is_resumable_sharded_and_keyed_by_landmarks(astronaut, tmp_path):
    from PIL import Image

    from facelivenet.data.joint import Record

    photo, marks = astronaut
    Image.fromarray(photo).save(tmp_path / "a.png")
    recs = [Record(str(tmp_path / "a.png"), "identities", landmarks=(marks + k).tolist()) for k in range(3)]
    cache = tmp_path / "cache"

    class Counting(tch.DlibTeacher):
        calls = 0

        def embed(self, chips):
            Counting.calls += len(chips)
            return super().embed(chips)

    teacher = Counting()
    tch.cache_teacher(recs, cache, teacher=teacher, shard=(0, 2))
    tch.cache_teacher(recs, cache, teacher=teacher, shard=(1, 2))
    keys, emb = tch.load_teacher_cache(cache)
    assert sorted(keys) == sorted(tch.record_key(r.path, r.landmarks) for r in recs)
    assert emb.shape == (3, 128) and Counting.calls == 3
    tch.cache_teacher(recs, cache, teacher=teacher)                 # nothing left to do
    assert Counting.calls == 3
    (cache / "teacher.json").write_text('{"teacher": "other"}\n')
    from facelivenet.errors import DatasetError

    with pytest.raises(DatasetError, match="another teacher"):
        tch.cache_teacher(recs, cache, teacher=teacher)


def test_missing_cache_is_one_line(tmp_path):
    from facelivenet.errors import DatasetError

    with pytest.raises(DatasetError, match="teacher-cache"):
        tch.load_teacher_cache(tmp_path)
