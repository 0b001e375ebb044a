"""The live challenge-response loop: capture → analysis → engine → display/events.

Capture (:class:`facelivenet.video.VideoSource`), analysis
(:class:`~facelivenet.auth.analyzer.FrameAnalyzer`) and display (:class:`Window`, or
none when headless) are separate; :func:`run_live` only wires them. Time is the
source's own: clip time for a file, seconds since capture start for a camera, so the
same loop runs on a camera and, in tests, on a video file.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from facelivenet.auth.analyzer import FrameAnalysis, FrameAnalyzer
from facelivenet.auth.challenge import (
    Challenge, ChallengeEngine, ChallengeSettings, Decision, EngineStatus, FrameTrace, Reason, ReasonCode,
    check_expression_classes, issue_challenge,
)
from facelivenet.video import Frame

CANCELLED = ReasonCode.CANCELLED


def display_available() -> bool:
    """Whether a :class:`Window` can be tried: on Linux, only with an X display.

    OpenCV's bundled Qt aborts the whole process (no Python exception) when it cannot
    connect to a display, so that case must be known before a window is created.
    """
    import os
    import sys

    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY"))


class Window:
    """An OpenCV window showing the prompt, countdown, face boxes, bars and the verdict."""

    def __init__(self, title: str = "facelivenet", threshold: float = 1.1):
        import os

        # OpenCV's bundled Qt warns about its missing font folder on every start; our
        # window draws its text with OpenCV, so keep those warnings off the terminal.
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        import cv2

        self.cv2 = cv2
        self.title = title
        self.threshold = threshold
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, frame: Frame, analysis: FrameAnalysis, trace: FrameTrace, status: EngineStatus) -> bool:
        """Draw one frame; False when the user pressed ``q`` (or closed the window)."""
        from facelivenet.auth.render import draw_overlay

        dists = [trace.identity_distance if i == 0 else None for i in range(len(analysis.faces))]
        img = draw_overlay(frame.image, analysis.faces, analysis.classes, dists, self.threshold,
                           status=f"{status.state}  {status.streak}/{status.needed}",
                           prompt=f"{status.prompt}  ({status.time_left:.0f} s)")
        self.cv2.imshow(self.title, self.cv2.cvtColor(img, self.cv2.COLOR_RGB2BGR))
        key = self.cv2.waitKey(1) & 0xFF
        return key != ord("q") and self.cv2.getWindowProperty(self.title, self.cv2.WND_PROP_VISIBLE) >= 1

    def final(self, frame: Frame | None, decision: Decision, seconds: float = 2.0) -> None:
        """Show the ACCEPT/REJECT banner for a moment, then close."""
        from facelivenet.auth.render import draw_overlay

        if frame is not None:
            img = draw_overlay(frame.image, (), (), (), self.threshold,
                               status="; ".join(r.message for r in decision.reasons)[:120],
                               banner=(decision.decision.upper(), decision.accepted))
            self.cv2.imshow(self.title, self.cv2.cvtColor(img, self.cv2.COLOR_RGB2BGR))
            self.cv2.waitKey(int(seconds * 1000))
        self.cv2.destroyWindow(self.title)


def run_live(frames: Iterable[Frame], analyzer: FrameAnalyzer, reference: np.ndarray,
             settings: ChallengeSettings, *, choices: Sequence[str], length: int = 1,
             on_event: Callable[[dict[str, Any]], None] = lambda e: None, window: Window | None = None,
             rng=None, sequence: Sequence[str] | None = None, reference_info: Any = None,
             source_name: str | None = None, fps: float | None = None, audit_dir: Any = None,
             reference_image: tuple[np.ndarray, Any] | None = None) -> Decision:
    """Issue a random challenge and run the engine on ``frames`` until it decides.

    With ``sequence`` the challenge is those expressions, in order, instead of a random
    draw of ``length`` from ``choices`` (a fixed challenge, for demos on recorded clips).

    Events passed to ``on_event``: ``challenge`` (once), ``state`` (at each change of
    state or awaited expression, with the frame's time), ``decision`` (once: the decision
    document of :func:`facelivenet.auth.decision.decision_report`, as ``verify-video
    --json`` gives it, with ``reference_info``, ``source_name`` as its ``clip``, the
    source's ``fps`` and the measured processing rate). With ``audit_dir`` the audit
    images (:mod:`facelivenet.auth.audit`: ``reference_image`` and the best frame of
    each completed step, kept in memory as the stream goes) are written there and
    listed in the decision's ``audit``.
    """
    import time

    started = time.perf_counter()
    frames = iter(frames)
    now = [0.0]
    first = next(frames, None)
    if first is not None:
        now[0] = first.timestamp
    if sequence is not None:
        challenge = Challenge(tuple(sequence), now[0], now[0] + settings.time_limit)
    else:
        challenge = issue_challenge(choices, length, settings=settings, clock=lambda: now[0], rng=rng)
    check_expression_classes(challenge, analyzer.model.expression_classes)
    engine = ChallengeEngine(challenge, settings, expression_classes=analyzer.model.expression_classes,
                             clock=lambda: now[0])
    on_event({"event": "challenge", "t": now[0], **challenge.to_dict(), "prompt": challenge.prompt()})
    last_state = None
    last_frame = None
    cancelled = False
    pending = [first] if first is not None else []
    best = None
    if audit_dir is not None:
        from facelivenet.auth.audit import BestFrames, prepare_audit_dir

        prepare_audit_dir(audit_dir)
        best = BestFrames()
    for frame in itertools.chain(pending, frames):
        now[0] = frame.timestamp
        last_frame = frame
        analysis = analyzer.analyze(frame.image)
        trace = engine.observe(analysis.observation(frame.timestamp, reference, frame.index))
        if best is not None:
            best.observe(trace, frame.image)
        if (trace.state, trace.awaiting) != last_state:
            last_state = (trace.state, trace.awaiting)
            on_event({"event": "state", "t": round(frame.timestamp, 3), "frame": frame.index,
                      "state": trace.state, "awaiting": trace.awaiting, "faces": trace.faces})
        if window is not None and not window.show(frame, analysis, trace, engine.status(frame.timestamp)):
            cancelled = True
            break
        if engine.decided:
            break
    decision = engine.finish(now[0])
    if cancelled and not decision.accepted:
        decision = dataclasses.replace(
            decision, reasons=(Reason(CANCELLED, "the session was closed before the challenge was answered"),))
    from facelivenet.auth.decision import decision_report

    seconds = time.perf_counter() - started
    processing = {"frames_per_second": len(decision.trace) / seconds if seconds > 0 else None,
                  "total_seconds": seconds}
    audit = None
    if best is not None:
        from facelivenet.auth.audit import write_audit

        audit = write_audit(audit_dir, decision, reference=reference_image, frames=best.frames)
    on_event({"event": "decision", "t": round(now[0], 3),
              **decision_report(decision, frames_analyzed=len(decision.trace), fps=fps, reference=reference_info,
                                clip=source_name, processing=processing, audit=audit)})
    if window is not None:
        window.final(last_frame, decision)
    return decision
