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
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # builds without the logging utilities
        pass


#: Frames counted at most when a clip's header has no frame count.
MAX_COUNTED_FRAMES = 100_000


def _count_frames(path: str) -> int:
    """Frames of a clip whose header has no count, by grabbing through it (no decoding to RGB)."""
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    n = 0
    try:
        while n < MAX_COUNTED_FRAMES and cap.grab():
            n += 1
    finally:
        cap.release()
    return n


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
            if isinstance(src, int) or (isinstance(src, str) and src.isdigit()):
                raise VideoReadError(f"{name}: cannot open the camera (no such device, in use, or no permission)")
            raise VideoReadError(f"{name}: cannot open as a video (corrupt, truncated or not a video)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise VideoReadError(f"{name}: no decodable frames")
        self._first = first
        if not live and count <= 0:  # no frame count in the header (a still image, a raw stream, some WebM)
            count = _count_frames(str(path))
        if not live and count < 2:
            self._cap.release()
            raise VideoReadError(f"{name}: a single image, not a video clip (give an MP4, WebM, AVI or MOV)")
        self.info = VideoInfo(
            source=name,
            fps=fps if 0 < fps < 1000 else 30.0,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            frame_count=count if count > 0 and not live else None,
            live=live,
        )

    def __iter__(self) -> Iterator[Frame]:
        """The kept frames. Frames between them are only grabbed (no retrieval, no
        colour conversion, no copy), so ``stride`` saves more than the analysis."""
        start = time.monotonic()
        index, kept = 0, 0
        frame = self._first
        self._first = None
        try:
            while True:
                if index % self.stride == 0:
                    ts = time.monotonic() - start if self.info.live else index / self.info.fps
                    yield Frame(index, ts, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    kept += 1
                    if self.max_frames is not None and kept >= self.max_frames:
                        return
                index += 1
                if index % self.stride == 0:
                    ok, frame = self._cap.read()
                    if not ok or frame is None:
                        return
                elif not self._cap.grab():
                    return
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


def h264_encoder() -> str | None:
    """The ffmpeg executable of the ``imageio-ffmpeg`` wheel (it has libx264), or None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        return None


class VideoWriter:
    """Write RGB frames to an .mp4 atomically: the file appears only on close.

    ``codec``: ``"mp4v"`` (OpenCV's MPEG-4 Part 2: every OpenCV reads it, browsers do
    not play it), ``"h264"`` (H.264 / yuv420p with the moov atom first, through the
    ffmpeg binary of the ``imageio-ffmpeg`` wheel: plays in browsers), or ``"auto"``
    (H.264 when that encoder is there, else mp4v). :attr:`codec` says which was used.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], codec: str = "mp4v"):
        if codec not in ("mp4v", "h264", "auto"):
            raise ValueError(f"codec must be mp4v, h264 or auto. Received: {codec!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.part{self.path.suffix}")
        self._proc = self._writer = None
        exe = h264_encoder() if codec != "mp4v" else None
        if codec == "h264" and exe is None:
            raise VideoReadError(f"{self.path}: no H.264 encoder (pip install imageio-ffmpeg)")
        self.codec = "h264" if exe else "mp4v"
        self.size = (int(size[0]), int(size[1]))
        if exe:
            import subprocess

            w, h = self.size
            self._proc = subprocess.Popen(
                [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                 "-s", f"{w}x{h}", "-r", f"{float(fps):.6g}", "-i", "-", "-an",
                 "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                 "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(self._tmp)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._writer.isOpened():
                raise VideoReadError(f"{self.path}: cannot write a video here")

    def write(self, rgb: np.ndarray) -> None:
        if self._proc is not None:
            frame = np.ascontiguousarray(rgb, dtype=np.uint8)
            if frame.shape[:2] != (self.size[1], self.size[0]):
                frame = cv2.resize(frame, self.size)
            try:
                self._proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                raise VideoReadError(f"{self.path}: the H.264 encoder stopped ({self._error()})") from None
        else:
            self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def _error(self) -> str:
        err = self._proc.stderr.read().decode(errors="replace").strip().splitlines() if self._proc.stderr else []
        return err[-1] if err else f"exit code {self._proc.returncode}"

    def close(self, keep: bool = True) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            self._proc.wait()
            if keep and self._proc.returncode != 0:
                message = self._error()
                self._tmp.unlink(missing_ok=True)
                raise VideoReadError(f"{self.path}: H.264 encoding failed ({message})")
            self._proc.stderr.close()
        else:
            self._writer.release()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        self.close(keep=exc_type is None)
