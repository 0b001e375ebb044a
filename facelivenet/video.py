"""Frames from video files and cameras, as RGB arrays with timestamps.

Capture lives here and nowhere else, so analysis and the challenge engine can be
fed scripted frames in tests. Files are decoded with FFmpeg (OpenCV's backend); a
file that opens but yields no frame is an error, never an empty success.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from facelivenet.errors import VideoReadError
from facelivenet.utils import check_input_file


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: frame number in the source (0-based, counting skipped frames).
        timestamp: seconds since the start of the clip (files) or of the capture (cameras).
        image: (H, W, 3) uint8 RGB.
    """

    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    source: str
    fps: float
    width: int
    height: int
    frame_count: int | None
    live: bool


def _quiet_opencv() -> None:
    """Keep OpenCV's own warnings (e.g. a backend refusing a file) off stderr."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # builds without the logging utilities
        pass


class VideoSource:
    """Iterate the frames of a video file, a camera index or a stream URL.

    Args:
        source: a file path, a camera index (int or digit string), or a URL.
        stride: keep every ``stride``-th frame (1 = all).
        max_frames: stop after this many kept frames.
    """

    def __init__(self, source: str | int | os.PathLike, *, stride: int = 1, max_frames: int | None = None):
        if stride < 1:
            raise VideoReadError(f"stride must be >= 1. Received: stride={stride}")
        self.stride = stride
        self.max_frames = max_frames
        # FFmpeg prints its own complaints about broken files on stderr; our error says it in one line.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        _quiet_opencv()
        src = os.fspath(source) if not isinstance(source, int) else source
        live = isinstance(src, int) or (isinstance(src, str) and src.isdigit())
        if live:
            self._cap = cv2.VideoCapture(int(src))
            name = f"camera {int(src)}"
        elif isinstance(src, str) and "://" in src:
            self._cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG)
            name = src
            live = True
        else:
            path = check_input_file(src, "video", VideoReadError)
            name = str(path)
            self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            raise VideoReadError(f"{name}: cannot open as a video (corrupt, truncated or not a video)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise VideoReadError(f"{name}: no decodable frames")
        self._first = first
        self.info = VideoInfo(
            source=name,
            fps=fps if 0 < fps < 1000 else 30.0,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            frame_count=count if count > 0 and not live else None,
            live=live,
        )

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index, kept = 0, 0
        frame = self._first
        self._first = None
        try:
            while frame is not None:
                if index % self.stride == 0:
                    ts = time.monotonic() - start if self.info.live else index / self.info.fps
                    yield Frame(index, ts, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    kept += 1
                    if self.max_frames is not None and kept >= self.max_frames:
                        return
                ok, frame = self._cap.read()
                if not ok:
                    frame = None
                index += 1
        finally:
            self.close()

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(path: str | os.PathLike, stride: int = 1, max_frames: int | None = None) -> tuple[VideoInfo, list[Frame]]:
    """All (kept) frames of a clip in memory, with its info."""
    src = VideoSource(path, stride=stride, max_frames=max_frames)
    return src.info, list(src)


class VideoWriter:
    """Write RGB frames to an .mp4 (mp4v) atomically: the file appears only on close."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.part{self.path.suffix}")
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise VideoReadError(f"{self.path}: cannot write a video here")

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        self._writer.release()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        self.close(keep=exc_type is None)
