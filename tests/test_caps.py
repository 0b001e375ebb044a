"""Issue 19: caps before costly work (frames, clip length, frames analysed, photos, model archives)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from facelivenet import images, video
from facelivenet.auth import clipcheck, verify
from facelivenet.auth.challenge import Challenge, ChallengeSettings, ReasonCode
from facelivenet.errors import ImageReadError, ModelLoadError, VideoReadError
from facelivenet.video import VideoSource, VideoWriter

from test_verify_video import ScriptedAnalyzer

REF = np.eye(4, dtype=np.float32)[:1]


def _clip(path, n, size=(64, 64), fps=30.0):
    with VideoWriter(path, fps, size) as w:
        for k in range(n):
            w.write(np.full((size[1], size[0], 3), (k * 9) % 255, np.uint8))
    return path


def test_frames_above_the_pixel_cap_are_downscaled_as_read(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "big.mp4", 4, size=(128, 96))
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 64 * 48)
    src = VideoSource(clip)
    assert (src.info.width, src.info.height) == (64, 48)
    assert {f.image.shape for f in src} == {(48, 64, 3)}


def test_a_clip_longer_than_the_cap_is_an_error_before_any_frame(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "long.mp4", 45)
    monkeypatch.setattr(clipcheck, "MAX_CLIP_SECONDS", 1.0)
    analyzer = ScriptedAnalyzer([("neutral", True)], REF)
    with pytest.raises(VideoReadError, match=r"lasts 2 s, more than the 1 s accepted"):
        verify.verify_clip(clip, analyzer, REF, Challenge.for_clip(("happy",), 15.0), ChallengeSettings())
    assert analyzer.k == 0


def test_frames_analyzed_are_capped_without_calling_the_clip_corrupt(tmp_path, monkeypatch):
    clip = _clip(tmp_path / "c.mp4", 40)
    monkeypatch.setattr(verify, "MAX_FRAMES_ANALYSED", 10)
    result = verify.verify_clip(clip, ScriptedAnalyzer([("neutral", True)], REF), REF,
                                Challenge.for_clip(("happy",), 15.0), ChallengeSettings())
    assert result.frames_analyzed == 10 and result.stopped_early
    assert ReasonCode.CLIP_CORRUPT not in result.decision.codes and not result.decision.accepted


def test_a_reference_photo_above_the_pixel_cap_is_downscaled(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for ext in ("jpg", "png"):
        path = tmp_path / f"big.{ext}"
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(path)
        monkeypatch.setattr(images, "DOWNSCALE_PIXELS", 100 * 75)
        arr = images.read_image(path)
        assert arr.shape[0] * arr.shape[1] <= 100 * 75 and arr.shape[2] == 3
        assert abs(arr.shape[1] / arr.shape[0] - 4 / 3) < 0.05


def test_a_decompression_bomb_is_one_line(tmp_path):
    # A PNG whose header claims 60000 x 60000 pixels (3.6 gigapixels) in a few bytes.
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError) as exc:
        images.read_image(bomb)
    assert "too large to decode safely" in str(exc.value) and "\n" not in str(exc.value)
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS


def _archive(path, config: bytes, extra: dict[str, bytes] = {}):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3"}))
        z.writestr("config.json", config)
        for name, data in extra.items():
            z.writestr(name, data)
    return path


def test_model_archive_members_are_size_checked_before_keras_opens_it(tmp_path, monkeypatch):
    from facelivenet.models import io

    opened = []
    monkeypatch.setattr(io.keras.saving, "load_model", lambda *a, **k: opened.append(a) or None)
    big = _archive(tmp_path / "big-config.keras", b"{" + b" " * (2 << 20) + b"}")  # 2 MB, deflates to KB
    assert big.stat().st_size < 100_000
    with pytest.raises(ModelLoadError, match=r"config.json inflates to 2,097,154 bytes"):
        io.load_network(big)
    monkeypatch.setattr(io, "MAX_ARCHIVE_BYTES", 10_000)
    heavy = _archive(tmp_path / "heavy.keras", b"{}", {"model.weights.h5": b"\0" * 20_000})
    with pytest.raises(ModelLoadError, match=r"inflate to 20,\d{3} bytes, more than the 10,000"):
        io.load_network(heavy)
    assert opened == []
