"""Uploaded files: copied into a private temporary folder under a size cap, always removed.

The client never names a path: a clip is saved as ``clip`` and photos as ``photo-N``
inside a fresh ``mkdtemp`` folder (mode 0700), which :func:`upload_dir` deletes on the
way out whatever happened.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from facelivenet.errors import InputError

CHUNK = 1 << 20


class UploadTooLarge(InputError):
    """An upload is over the server's size cap (HTTP 413)."""


class ClipRefused(InputError):
    """A readable clip over the duration or resolution cap (HTTP 422)."""


@contextlib.contextmanager
def upload_dir() -> Iterator[Path]:
    """A private temporary folder, removed with everything in it on exit."""
    d = Path(tempfile.mkdtemp(prefix="facelivenet-upload-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def save_upload(source: BinaryIO, dest: Path, limit: int, what: str) -> Path:
    """Copy ``source`` to ``dest``, refusing it (:class:`UploadTooLarge`) past ``limit`` bytes."""
    total = 0
    with open(dest, "wb") as out:
        while chunk := source.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise UploadTooLarge(f"the {what} is larger than the server's limit of {limit:,} bytes")
            out.write(chunk)
    if total == 0:
        raise InputError(f"the {what} is empty")
    return dest


def probe_clip(path: Path, *, max_seconds: float, max_side: int) -> Any:
    """The clip's :class:`~facelivenet.video.VideoInfo`, checked against the caps.

    Raises:
        VideoReadError: not a readable clip (fewer than two decodable frames).
        ClipRefused: longer than ``max_seconds`` or larger than ``max_side`` pixels.
    """
    from facelivenet.video import VideoSource

    info = VideoSource(path).info  # VideoReadError unless it opens with at least two decodable frames
    if max(info.width, info.height) > max_side:
        raise ClipRefused(f"the clip is {info.width}x{info.height}; the server takes at most {max_side} pixels "
                          "on the longest side")
    if info.frame_count and info.fps > 0 and info.frame_count / info.fps > max_seconds:
        raise ClipRefused(f"the clip lasts {info.frame_count / info.fps:.1f} s; the server takes at most "
                          f"{max_seconds:g} s")
    return info
