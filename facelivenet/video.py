"""Frames from video files and cameras, as RGB arrays with timestamps.

Capture lives here and nowhere else, so analysis and the challenge engine can be
fed scripted frames in tests. Files are decoded with FFmpeg (OpenCV's backend); a
file that opens but yields no frame is an error, never an empty success.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from facelivenet.errors import VideoReadError
from facelivenet.utils import check_input_file, current_umask


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
    #: The rate the container declares (0 when it declares none); ``fps`` falls back to 30.
    declared_fps: float = 0.0


def _quiet_opencv() -> None:
    """Keep OpenCV's own warnings (e.g. a backend refusing a file) off stderr."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # builds without the logging utilities
        pass


def display_name(path: str | os.PathLike) -> str:
    """``path`` for messages: bytes that are not UTF-8 shown as escapes, never a crash when printed."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


@contextlib.contextmanager
def opencv_path(path: str | os.PathLike) -> Iterator[str]:
    """A name OpenCV can open for ``path``: the path itself when it is valid UTF-8, else a
    symlink with an ASCII name in a private temporary folder, removed on exit.

    OpenCV's path binding crashes the process (a segfault, no message) on a file name
    whose bytes are not UTF-8; Python holds such names with surrogate escapes.
    """
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield text
        return
    suffix = Path(text).suffix
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
    folder = tempfile.mkdtemp(prefix="facelivenet-")  # 0700: nobody else can swap the link
    link = os.path.join(folder, "media" + suffix)
    os.symlink(os.path.abspath(os.fsencode(path)), os.fsencode(link))
    try:
        yield link
    finally:
        os.unlink(link)
        os.rmdir(folder)


#: Frames above this many pixels (4K UHD) are downscaled as they are read, before any
#: detection: no face check needs more, and an 8K or forged huge frame costs no more.
MAX_FRAME_PIXELS = 3840 * 2160

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

    Frames above :data:`MAX_FRAME_PIXELS` come out downscaled (``info`` gives the size
    they come out at).
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
            name = display_name(path)
            with opencv_path(path) as opened:  # FFmpeg keeps the file open: the link can go
                self._cap = cv2.VideoCapture(opened, cv2.CAP_FFMPEG)
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
        self._first_ts = self._position()
        #: frames decoded (or grabbed) so far, counting skipped ones
        self.frames_read = 1
        if not live and count <= 0:  # no frame count in the header (a still image, a raw stream, some WebM)
            with opencv_path(path) as opened:
                count = _count_frames(opened)
        if not live and count < 2:
            self._cap.release()
            raise VideoReadError(f"{name}: a single image, not a video clip (give an MP4, WebM, AVI or MOV)")
        h, w = first.shape[:2]
        self._size = None
        if w * h > MAX_FRAME_PIXELS:
            scale = (MAX_FRAME_PIXELS / (w * h)) ** 0.5
            self._size = (max(1, int(w * scale)), max(1, int(h * scale)))
            w, h = self._size
        self.info = VideoInfo(
            source=name,
            fps=fps if 0 < fps < 1000 else 30.0,
            width=int(w),
            height=int(h),
            frame_count=count if count > 0 and not live else None,
            live=live,
            declared_fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
        )

    def _position(self) -> float | None:
        """The container's timestamp of the frame just read or grabbed, in seconds
        (``None`` when it has none: raw streams)."""
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if ms is not None and math.isfinite(ms) and ms > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        """The kept frames. Frames between them are only grabbed (no retrieval, no
        colour conversion, no copy), so ``stride`` saves more than the analysis."""
        start = time.monotonic()
        index, kept = 0, 0
        frame, stamp = self._first, self._first_ts
        self._first = None
        self.frames_read = 1
        try:
            while True:
                if index % self.stride == 0:
                    if self.info.live:
                        ts = time.monotonic() - start
                    else:  # the frame's own time; the rate's only where the container has none
                        ts = stamp if stamp is not None else index / self.info.fps
                    if self._size is not None:
                        frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
                    yield Frame(index, ts, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    kept += 1
                    if self.max_frames is not None and kept >= self.max_frames:
                        return
                index += 1
                if index % self.stride == 0:
                    ok, frame = self._cap.read()
                    if not ok or frame is None:
                        return
                    stamp = self._position()
                elif not self._cap.grab():
                    return
                self.frames_read = index + 1
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

    The frames go to a temporary file created exclusively in the target folder
    (``mkstemp``: a random name, ``O_EXCL``, so a planted symlink is never followed)
    and renamed over ``path`` on close; it is removed on an error, Ctrl-C or (used as
    a context manager in the main thread) SIGTERM.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], codec: str = "mp4v"):
        if codec not in ("mp4v", "h264", "auto"):
            raise ValueError(f"codec must be mp4v, h264 or auto. Received: {codec!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".facelivenet-", suffix=".part.mp4", dir=self.path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # as any file the user creates, not mkstemp's 0600
        self._tmp = Path(tmp)
        self._link = contextlib.ExitStack()
        self._proc = self._writer = None
        self._old_term = None
        try:
            self._open(fps, size, codec)
        except BaseException:
            self._link.close()
            self._tmp.unlink(missing_ok=True)
            raise

    def _open(self, fps: float, size: tuple[int, int], codec: str) -> None:
        exe = h264_encoder() if codec != "mp4v" else None
        if codec == "h264" and exe is None:
            raise VideoReadError(f"{display_name(self.path)}: no H.264 encoder (pip install imageio-ffmpeg)")
        self.codec = "h264" if exe else "mp4v"
        self.size = (int(size[0]), int(size[1]))
        if exe:
            import subprocess

            w, h = self.size
            self._proc = subprocess.Popen(
                [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                 "-s", f"{w}x{h}", "-r", f"{float(fps):.6g}", "-i", "-", "-an",
                 "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                 "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", os.fsencode(self._tmp)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            target = self._link.enter_context(opencv_path(self._tmp))
            self._writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            if not self._writer.isOpened():
                raise VideoReadError(f"{display_name(self.path)}: cannot write a video here")

    def write(self, rgb: np.ndarray) -> None:
        if self._proc is not None:
            frame = np.ascontiguousarray(rgb, dtype=np.uint8)
            if frame.shape[:2] != (self.size[1], self.size[0]):
                frame = cv2.resize(frame, self.size)
            try:
                self._proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                raise VideoReadError(f"{display_name(self.path)}: the H.264 encoder stopped ({self._error()})") from None
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
                raise VideoReadError(f"{display_name(self.path)}: H.264 encoding failed ({message})")
            self._proc.stderr.close()
        else:
            self._writer.release()
        self._link.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        if threading.current_thread() is threading.main_thread():
            # SIGTERM unwinds like Ctrl-C, so __exit__ removes the partial file.
            self._old_term = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, exc_type, *rest) -> None:
        try:
            self.close(keep=exc_type is None)
        finally:
            if self._old_term is not None:
                signal.signal(signal.SIGTERM, self._old_term)
                self._old_term = None


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)
