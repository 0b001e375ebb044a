import os

import numpy as np
import pytest
from PIL import Image

from facelivenet.errors import ImageReadError
from facelivenet.images import read_image


def _save(path, array, **kw):
    Image.fromarray(array).save(path, **kw)
    return path


def test_reads_rgb_grey_rgba_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = read_image(_save(tmp_path / "a.png", rgb))
    assert out.shape == (20, 30, 3) and np.array_equal(out, rgb)
    grey = read_image(_save(tmp_path / "g.png", rgb[..., 0]))
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 1], rgb[..., 0])
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    assert np.array_equal(read_image(_save(tmp_path / "r.png", rgba)), rgb)
    sixteen = np.full((4, 5), 65535, np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "s.png")
    out16 = read_image(tmp_path / "s.png")
    assert out16.dtype == np.uint8 and out16.shape == (4, 5, 3) and np.all(out16 == 255)


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not an image at all")
    good = _save(tmp_path / "good.jpg", np.zeros((64, 64, 3), np.uint8))
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    png = _save(tmp_path / "good.png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    truncated_png = tmp_path / "trunc.png"
    truncated_png.write_bytes(png.read_bytes()[:200])
    cases = {
        tmp_path / "missing.png": "no such file",
        tmp_path: "directory",
        empty: "empty file",
        text: "not a readable image",
        truncated: "corrupt",
        truncated_png: "corrupt",
    }
    for path, fragment in cases.items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        msg = str(info.value)
        assert str(path) in msg and fragment in msg and "\n" not in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    p = _save(tmp_path / "locked.png", np.zeros((4, 4, 3), np.uint8))
    p.chmod(0)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(p)


def test_huge_image_is_refused_without_decoding(tmp_path, monkeypatch):
    import facelivenet.images as images

    p = _save(tmp_path / "big.png", np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(images, "MAX_PIXELS", 5_000)
    with pytest.raises(ImageReadError, match="100x100 pixels"):
        read_image(p)


@pytest.mark.parametrize("orientation, expected_shape", [(1, (20, 40, 3)), (6, (40, 20, 3)), (8, (40, 20, 3)),
                                                          (3, (20, 40, 3))])
def test_exif_orientation_is_applied(tmp_path, orientation, expected_shape):
    # A 40x20 landscape frame, red on its left half, stored with an EXIF orientation tag
    # as phones do: 6 = rotate 90 degrees clockwise to view, 8 = counter-clockwise, 3 = 180.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    out = read_image(path)
    assert out.shape == expected_shape
    red = out[..., 0] > 128
    if orientation == 6:  # viewed upright, the left half becomes the top half
        assert red[:20].all() and not red[20:].any()
    elif orientation == 8:  # ... or the bottom half
        assert red[20:].all() and not red[:20].any()
    elif orientation == 3:  # upside down: the red half is on the right
        assert red[:, 20:].all() and not red[:, :20].any()
    else:
        assert red[:, :20].all() and not red[:, 20:].any()


def test_outputs_follow_the_umask_and_galleries_stay_private(tmp_path):
    import stat

    from facelivenet.auth.gallery import Gallery
    from facelivenet.utils import atomic_path, atomic_save_npy, current_umask

    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        atomic_save_npy(tmp_path / "e.npy", np.zeros(3))
        with atomic_path(tmp_path / "p.png") as tmp:
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp, format="PNG")
        assert stat.S_IMODE((tmp_path / "e.npy").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "p.png").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_save_npy(tmp_path / "f.npy", np.zeros(3))
        assert stat.S_IMODE((tmp_path / "f.npy").stat().st_mode) == 0o600
        os.umask(0o022)
        g = Gallery("x", 2)
        g.save(tmp_path / "g.json")
        assert stat.S_IMODE((tmp_path / "g.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)
