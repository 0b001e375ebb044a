"""The demo's media: a public-domain face photo and the photo attack a fraudster would film.

:func:`astronaut_photo` is scikit-image's portrait of the astronaut Eileen Collins (NASA,
public domain; ``skimage.data.astronaut()``, shipped inside the package). The photo
attack (:func:`photo_attack_frames`, :func:`write_photo_attack`) is that still photo
held up to a camera: it drifts, zooms and tilts slightly, and the exposure breathes,
but the face on it never changes expression. Everything is deterministic (smooth
sinusoids whose frequencies and phases come from ``seed``; no global random state), so
the same call always gives the same clip.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facelivenet.errors import InputError

#: Largest translation of the photo, as a fraction of the frame's shorter side.
SHIFT = 0.03
#: The photo's scale goes between 1 and 1 + ZOOM (held closer and farther).
ZOOM = 0.08
#: Largest in-plane rotation, degrees.
TILT_DEG = 2.0
#: Largest relative brightness change (exposure drift).
BRIGHTNESS = 0.08
#: Grey of the background around the photo when it moves off an edge.
BACKGROUND = (48, 48, 48)
#: The default motion. Chosen so that the face detector (MTCNN, at the default detection
#: size and at full resolution) finds exactly the one face in every frame of the encoded
#: 4 s astronaut clip: with seeds 0 and 1 one frame also gets a false body-sized box
#: (score 0.92), and the engine then rejects it for two faces before judging liveness.
DEFAULT_SEED = 2


def astronaut_photo() -> np.ndarray:
    """The astronaut portrait: (512, 512, 3) uint8 RGB.

    Raises:
        InputError: scikit-image is not installed (or its bundled image cannot be read).
    """
    try:
        from skimage import data
    except ImportError:
        raise InputError("the demo photo comes with scikit-image, which is not installed "
                         "(pip install scikit-image)") from None
    try:
        photo = data.astronaut()
    except Exception as exc:  # a broken installation: say so in one line
        raise InputError(f"cannot read scikit-image's astronaut photo ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(photo, dtype=np.uint8)


def attack_frame_count(seconds: float, fps: float) -> int:
    """Number of frames of a ``seconds`` long clip at ``fps`` (at least 1)."""
    if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(fps) and fps > 0):
        raise InputError(f"a clip needs seconds > 0 and fps > 0. Received: seconds={seconds!r}, fps={fps!r}")
    return max(1, round(seconds * fps))


def _motion(n: int, fps: float, seed: int) -> np.ndarray:
    """(n, 5) per frame: x shift, y shift (fractions of the side), scale, angle (deg), gain."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.15, 0.4, 5)  # Hz: slow, one to two swings over a few seconds
    phase = rng.uniform(0.0, 2 * np.pi, 5)
    t = np.arange(n, dtype=np.float64)[:, None] / fps
    wave = np.sin(2 * np.pi * freq * t + phase)  # (n, 5) in [-1, 1]
    return np.stack([
        SHIFT * wave[:, 0],
        SHIFT * wave[:, 1],
        1.0 + ZOOM * (1.0 + wave[:, 2]) / 2,
        TILT_DEG * wave[:, 3],
        1.0 + BRIGHTNESS * wave[:, 4],
    ], axis=1)


def photo_attack_frames(photo: np.ndarray, seconds: float = 4.0, fps: float = 25.0,
                        size: int | tuple[int, int] | None = None, seed: int = DEFAULT_SEED) -> Iterator[np.ndarray]:
    """The frames of a camera filming ``photo`` held in front of it.

    The photo is fitted into the frame (aspect kept, centred), then moved per frame by
    a similarity transform about the frame centre: translation up to ``SHIFT`` (3 %)
    of the frame's shorter side on each axis, scale 1.0 to 1.08, rotation up to
    ±2°; then the whole frame's brightness is scaled by 0.92 to 1.08. Each quantity is
    a slow sinusoid (0.15 to 0.4 Hz) with a frequency and phase drawn from ``seed``,
    so consecutive frames differ a little and the clip is the same for the same
    arguments. Where the photo does not cover the frame, the background is grey.

    Args:
        photo: (H, W, 3) uint8 RGB.
        seconds, fps: clip length and frame rate: ``round(seconds * fps)`` frames.
        size: output frame size, ``N`` (square) or ``(width, height)``; default the
            photo's own ``(W, H)``.
        seed: chooses the frequencies and phases of the motion.

    Yields:
        (height, width, 3) uint8 RGB frames.
    """
    import cv2

    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8 or min(photo.shape[:2]) < 2:
        raise InputError(f"the photo must be an (H, W, 3) uint8 RGB image. Received: {photo.dtype} {photo.shape}")
    n = attack_frame_count(seconds, fps)
    if size is None:
        width, height = photo.shape[1], photo.shape[0]
    elif isinstance(size, int):
        width = height = size
    else:
        width, height = (int(v) for v in size)
    if width < 2 or height < 2:
        raise InputError(f"frame size must be at least 2x2. Received: {size!r}")
    fit = min(width / photo.shape[1], height / photo.shape[0])
    centre = (photo.shape[1] / 2.0, photo.shape[0] / 2.0)
    side = min(width, height)
    for dx, dy, scale, angle, gain in _motion(n, fps, seed):
        # Rotate and scale about the photo's centre, then move that centre to the frame's (plus the shift).
        m = cv2.getRotationMatrix2D(centre, float(angle), float(scale * fit))
        m[0, 2] += width / 2.0 - centre[0] + dx * side
        m[1, 2] += height / 2.0 - centre[1] + dy * side
        frame = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)
        yield cv2.convertScaleAbs(frame, alpha=float(gain))


def write_photo_attack(path: str | os.PathLike, photo: np.ndarray, seconds: float = 4.0, fps: float = 25.0,
                       size: int | tuple[int, int] | None = None, seed: int = DEFAULT_SEED) -> int:
    """Write :func:`photo_attack_frames` to an .mp4 (atomically: the file appears complete
    or not at all); returns the number of frames written."""
    from facelivenet.video import VideoWriter

    frames = photo_attack_frames(photo, seconds, fps, size, seed)
    first = next(frames)
    count = 0
    with VideoWriter(Path(path), fps, (first.shape[1], first.shape[0])) as writer:
        for frame in itertools.chain((first,), frames):
            writer.write(frame)
            count += 1
    return count
