"""Detection and alignment on the real photos in ../shared/data (skipped when absent)."""

from __future__ import annotations

import pytest

from facelivenet.detect import FaceDetector, align_face, pick_main_face
from facelivenet.images import read_image

from conftest import shared_data

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def detector():
    return FaceDetector().load()


@pytest.mark.parametrize(
    "name, faces",
    [("obama.jpg", 1), ("obama-240p.jpg", 1), ("obama-480p.jpg", 1), ("obama2.jpg", 1), ("obama_small.jpg", 1),
     ("biden.jpg", 1), ("two_people.jpg", 2), ("rgba_32bit.png", 1)],
)
def test_photos(detector, name, faces):
    image = read_image(shared_data("photos", name))
    found = [f for f in detector.detect(image) if f.score > 0.9]
    assert len(found) == faces
    for f in found:
        assert align_face(image, f, 160, "similarity").shape == (160, 160, 3)


@pytest.mark.slow
def test_celeba_sample_yields_a_face_for_95_percent(detector):
    root = shared_data("celeba-identities")
    paths = sorted(root.glob("*/*.jpg"))[::20][:200]
    assert len(paths) >= 100
    hits = 0
    for p in paths:
        image = read_image(p)
        face = pick_main_face(detector.detect(image), image.shape)
        if face is not None:
            hits += 1
            assert align_face(image, face, 160, "crop", 32).shape == (160, 160, 3)
    assert hits / len(paths) >= 0.95, f"{hits}/{len(paths)} CelebA photos gave a face"
