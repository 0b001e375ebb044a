"""Offline verification of a clip: frames → analyser → challenge engine → decision."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from facelivenet.auth.analyzer import FrameAnalysis, FrameAnalyzer
from facelivenet.auth.challenge import ACCEPTED, Challenge, ChallengeEngine, ChallengeSettings, Decision
from facelivenet.auth.clipcheck import MAX_FRAMES_ANALYSED, ClipTiming
from facelivenet.video import VideoInfo, VideoSource

#: Frames analysed per batched network forward in the offline mode (batch 32 costs
#: ~2/3 of batch 8 per face on this CPU; the offline mode has no latency to keep).
FRAME_BATCH = 32


@dataclass
class ClipVerification:
    """Result of :func:`verify_clip`.

    Attributes:
        decision: the engine's decision.
        info: the clip's properties.
        frames_analyzed: frames that went through the analyser.
        timestamps, analyses: per analysed frame (for the timeline and annotation).
        seconds: wall time spent in ``detect``, ``network`` and ``total``.
        stopped_early: the analysis stopped at the engine's decision, before the
            clip's last frame (frames after it were not decoded).
    """

    decision: Decision
    info: VideoInfo
    frames_analyzed: int
    indices: list[int] = field(default_factory=list)
    analyses: list[FrameAnalysis] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False

    @property
    def processing_fps(self) -> float:
        return self.frames_analyzed / self.seconds["total"] if self.seconds.get("total") else 0.0


def _unanalysed_refused(frames, timing: ClipTiming, source: VideoSource):
    """The clip check of the frames after an accept: decoded and timed, not analysed.

    An accept reached early is not a decision on part of the clip: the frames after it
    must still decode up to the declared count (``clip_corrupt``) with timestamps that
    fit the frame count (``clip_timing``). The first refusal, or None.
    """
    for frame in frames:
        refused = timing.frame(frame.index, frame.timestamp)
        if refused is not None:
            return refused
    return timing.ended(source.frames_read)


def verify_clip(path: str | os.PathLike, analyzer: FrameAnalyzer, reference: np.ndarray, challenge: Challenge,
                settings: ChallengeSettings, *, stride: int = 1,
                on_frames: Callable[[int], None] | None = None) -> ClipVerification:
    """Run the challenge engine on the frames of a clip.

    Args:
        path: the clip.
        analyzer: detector + network.
        reference: (K, D) unit embeddings of the claimed identity.
        challenge: in clip time (see :meth:`Challenge.for_clip`).
        settings: the engine's settings.
        stride: analyse every ``stride``-th frame.
        on_frames: called with the number of frames just analysed (progress).

    The analysis stops at the engine's decision (an accept, or a reject that later
    frames cannot change: the deadline passed, two faces, a wrong expression, ...),
    once a face has been seen at all: a clip that shows no face until its end is
    told apart from one whose face came too late.

    The frames' times are checked first (:mod:`facelivenet.auth.clipcheck`): a declared
    rate out of range, or timestamps that disagree with the frame count, reject as
    ``clip_timing``; a clip that stops decoding well before its declared end rejects
    as ``clip_corrupt``. After an early accept the remaining frames are still decoded
    and their times checked (not analysed): a clip that fails there is rejected for it.
    """
    source = VideoSource(path, stride=stride)
    engine = ChallengeEngine(challenge, settings, expression_classes=analyzer.model.expression_classes)
    timing = ClipTiming(source.info)
    try:
        refused = timing.declared()
    except Exception:
        source.close()
        raise
    if refused is not None:
        source.close()
        engine.refuse(refused, 0.0)
        return ClipVerification(decision=engine.finish(0.0), info=source.info, frames_analyzed=0,
                                seconds={"detect": 0.0, "network": 0.0, "total": 0.0})
    indices: list[int] = []
    analyses: list[FrameAnalysis] = []
    detect_s = network_s = 0.0
    last_ts = 0.0
    t_start = time.perf_counter()
    batch = []
    frames = iter(source)
    face_seen = stopped = False
    # Small batches first: a reject on the first frames (two faces, a refused identity)
    # is found without analysing a whole batch.
    size = 4
    while not stopped and len(indices) < MAX_FRAMES_ANALYSED:
        batch.clear()
        for frame in frames:
            refused = timing.frame(frame.index, frame.timestamp)
            if refused is not None:
                refused_at = (frame.timestamp, frame.index)
                break
            batch.append(frame)
            if len(batch) == size or len(indices) + len(batch) >= MAX_FRAMES_ANALYSED:
                break
        size = min(2 * size, FRAME_BATCH)
        if not batch and refused is None:
            break
        done = 0
        for frame, fa in zip(batch, analyzer.analyze_batch([f.image for f in batch]) if batch else ()):
            engine.observe(fa.observation(frame.timestamp, reference, frame.index))
            indices.append(frame.index)
            analyses.append(fa)
            detect_s += fa.detect_seconds
            network_s += fa.network_seconds
            last_ts = frame.timestamp
            done += 1
            face_seen = face_seen or bool(fa.faces)
            if engine.decided and face_seen:
                stopped = True
                break
        if on_frames and done:
            on_frames(done)
        if refused is not None and not stopped:
            engine.refuse(refused, *refused_at)
            stopped = True
    capped = len(indices) >= MAX_FRAMES_ANALYSED
    following = next(frames, None)
    stopped = (stopped or capped) and following is not None
    if not stopped and not capped and not engine.decided:
        corrupt = timing.ended(source.frames_read)
        if corrupt is not None:
            engine.refuse(corrupt, last_ts, indices[-1] if indices else None)
    late = None
    if engine.state == ACCEPTED:  # the frames after the accept, if any, and the count
        rest = itertools.chain([following], frames) if following is not None else ()
        late = _unanalysed_refused(rest, timing, source)
    total = time.perf_counter() - t_start
    end_time = last_ts + stride / source.info.fps
    decision = engine.finish(end_time)
    if late is not None:  # the decision's phases and trace stay; the verdict is the clip's
        decision = dataclasses.replace(decision, accepted=False, reasons=(late,))
    return ClipVerification(
        decision=decision, info=source.info, frames_analyzed=len(indices), indices=indices,
        analyses=analyses, seconds={"detect": detect_s, "network": network_s, "total": total},
        stopped_early=stopped,
    )
