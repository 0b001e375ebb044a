"""Checks on an uploaded clip's frames before the engine trusts their times.

The engine's durations (Neutral held 0.5 s, an expression 0.3 s, the deadline) are
measured on the frames' timestamps. A clip that lies about time would shrink them:
the genuine frames re-stamped at 120 fps answer in a third of the time, a 3-frame
flash lasts 25 ms. So the offline mode refuses, as ``clip_timing``:

- a declared frame rate outside [:data:`MIN_FPS`, :data:`MAX_FPS`] (what cameras record);
- frame timestamps that go back or stand still, or drift from the frame count at the
  declared rate by more than :data:`DRIFT_SECONDS` plus :data:`DRIFT_FRACTION` of the time;

and, as ``clip_corrupt``, a clip whose decoding stopped well before the frame count
its header declares (a decision on the frames that happened to decode would be silent
about the rest).

Caps keep the work bounded whatever the clip: a clip declaring more than
:data:`MAX_CLIP_SECONDS` is refused before any frame is analysed (an error: the token
is not spent), and no more than :data:`MAX_FRAMES_ANALYSED` frames are analysed.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelivenet.auth.challenge import Reason, ReasonCode
from facelivenet.errors import VideoReadError
from facelivenet.video import VideoInfo

#: Longest clip accepted, in seconds at its declared rate (a challenge is answered in 15 s).
MAX_CLIP_SECONDS = 120.0
#: Most frames analysed in one clip (60 s at 60 fps).
MAX_FRAMES_ANALYSED = 3600

#: Declared frame rates accepted for an uploaded clip.
MIN_FPS, MAX_FPS = 10.0, 60.0
#: A frame's timestamp may differ from ``index / fps`` by this much (variable-rate phones) ...
DRIFT_SECONDS = 0.25
#: ... plus this fraction of its time.
DRIFT_FRACTION = 0.05
#: Frames a clip may lack against its header's count before it counts as corrupt
#: (containers round their count): at least this many, or this fraction of the count.
MISSING_FRAMES, MISSING_FRACTION = 3, 0.05


@dataclass
class ClipTiming:
    """Checks the frames of one clip in decoding order."""

    info: VideoInfo
    _last: float | None = None

    def declared(self) -> Reason | None:
        """The ``clip_timing`` reason when the declared rate is outside what we accept.

        Raises:
            VideoReadError: the clip is longer than :data:`MAX_CLIP_SECONDS`.
        """
        fps = self.info.declared_fps
        if self.info.frame_count and self.info.frame_count / self.info.fps > MAX_CLIP_SECONDS:
            raise VideoReadError(
                f"{self.info.source}: the clip lasts {self.info.frame_count / self.info.fps:.0f} s, more than "
                f"the {MAX_CLIP_SECONDS:.0f} s accepted (a challenge is answered within its time limit); cut it")
        if MIN_FPS <= fps <= MAX_FPS:
            return None
        said = f"{fps:g} fps" if fps > 0 else "no frame rate"
        return Reason(ReasonCode.CLIP_TIMING,
                      f"the clip declares {said}; a clip is accepted at {MIN_FPS:g} to {MAX_FPS:g} fps, "
                      "so that its frames' times are those of a camera")

    def frame(self, index: int, timestamp: float) -> Reason | None:
        """The ``clip_timing`` reason when frame ``index``'s timestamp cannot be right."""
        last, self._last = self._last, timestamp
        if last is not None and timestamp <= last:
            return Reason(ReasonCode.CLIP_TIMING,
                          f"frame {index}'s timestamp ({timestamp:.3f} s) does not come after the "
                          f"previous frame's ({last:.3f} s)")
        expected = index / self.info.fps
        if abs(timestamp - expected) > DRIFT_SECONDS + DRIFT_FRACTION * expected:
            return Reason(ReasonCode.CLIP_TIMING,
                          f"frame {index} is stamped t={timestamp:.3f} s but is at t={expected:.3f} s "
                          f"at the declared {self.info.fps:g} fps: the timestamps disagree with the frame count")
        return None

    def ended(self, frames_decoded: int) -> Reason | None:
        """The ``clip_corrupt`` reason when decoding stopped short of the declared count."""
        declared = self.info.frame_count
        if not declared or declared - frames_decoded <= max(MISSING_FRAMES, MISSING_FRACTION * declared):
            return None
        return Reason(ReasonCode.CLIP_CORRUPT,
                      f"the clip stopped decoding after {frames_decoded} of the {declared} frames its "
                      "header declares (corrupt or truncated); it is not decided on part of its frames")
