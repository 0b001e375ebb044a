"""The challenge-response engine itself (see the package doc for its rules)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from facelivenet.auth.challenge.reasons import Reason, ReasonCode
from facelivenet.auth.challenge.settings import Box, ChallengeSettings, Clock, NEUTRAL, _finite
from facelivenet.auth.challenge.sequences import Challenge, check_expression_classes, step_instruction
from facelivenet.auth.challenge.observations import FaceObservation, FrameObservation, same_track
from facelivenet.auth.challenge.pose import Pose, is_move, median_pose, move_shown
from facelivenet.auth.challenge.results import (
    ACCEPTED, AWAIT_EXPRESSION, AWAIT_NEUTRAL, REJECTED, WAITING, Decision, EngineStatus, FrameTrace, PhaseRecord,
)
from facelivenet.errors import ChallengeError


#: Consecutive matching frames of the tracked face that establish its identity even
#: before a frame counted (see ``identity_change_frames``).
_ESTABLISH_FRAMES = 3


@dataclass
class _Counted:
    index: int
    t: float
    distance: float


class ChallengeEngine:
    """State machine deciding one challenge from a stream of frame observations.

    Feed frames with :meth:`observe` (timestamps never decreasing), call :meth:`tick`
    when time passes without frames (live streams), and :meth:`finish` at the end
    of the input. Frames after the decision are still traced (for plots) but change
    nothing. Usage::

        engine = ChallengeEngine(challenge, ChallengeSettings.for_model(model.config))
        for obs in observations:
            engine.observe(obs)
            if engine.decided:
                break
        decision = engine.finish()
    """

    def __init__(self, challenge: Challenge, settings: ChallengeSettings | None = None, *,
                 expression_classes: Iterable[str] | None = None, clock: Clock = time.time):
        self.challenge = challenge
        self.settings = settings or ChallengeSettings()
        self.clock = clock
        if expression_classes is not None:
            check_expression_classes(challenge, expression_classes)
        self._steps: tuple[str, ...] = (NEUTRAL,) + challenge.expressions
        self._step = 0
        self._streak: list[_Counted] = []
        self._best: dict[int, list[_Counted]] = {}
        self._phases: list[PhaseRecord] = []
        self._extend: list[_Counted] | None = None  # counted frames of the last completed phase
        self._mismatched_shown: dict[str, int] = {}
        self._wrong_runs: dict[str, tuple[int, float]] = {}  # name -> (frames, first t)
        self._last_box: Box | None = None
        self._last_face_t: float = challenge.issued_at
        self._identity_set = False
        self._mismatch_run = 0
        self._match_run = 0
        self._trace: list[FrameTrace] = []
        self._count = 0
        self._last_t = -math.inf
        self._verdict: tuple[bool, tuple[Reason, ...], float, int | None] | None = None
        self._poses: dict[int, Pose | None] = {}  # pose of each counted Neutral frame, by index
        self._baseline: Pose | None = None  # the frontal Neutral pose head moves are measured from

    # ----------------------------------------------------------------- public API

    @property
    def decided(self) -> bool:
        return self._verdict is not None

    @property
    def state(self) -> str:
        if self._verdict is not None:
            return ACCEPTED if self._verdict[0] else REJECTED
        if self._count == 0 or self._last_t < self.challenge.issued_at:
            return WAITING
        return AWAIT_NEUTRAL if self._step == 0 else AWAIT_EXPRESSION

    @property
    def awaiting(self) -> str | None:
        return None if self._verdict is not None else self._steps[self._step]

    @property
    def trace(self) -> tuple[FrameTrace, ...]:
        return tuple(self._trace)

    def observe(self, frame: FrameObservation) -> FrameTrace:
        """Process one frame; returns its trace entry (with the state after it)."""
        t = float(frame.timestamp)
        if not math.isfinite(t):
            raise ChallengeError(f"frame timestamp must be a finite number. Received: {frame.timestamp!r}")
        if t < self._last_t:
            raise ChallengeError(f"frame timestamps went back from {self._last_t} to {t}")
        index = self._count if frame.index is None else int(frame.index)
        self._last_t = t
        self._count += 1
        faces = list(frame.faces)
        face = faces[0] if faces else None
        counted = None
        if self._verdict is None and t >= self.challenge.issued_at:
            counted = self._step_frame(t, index, faces)
        return self._record(index, t, faces, face, counted)

    def tick(self, now: float | None = None) -> bool:
        """Apply the deadline and the no-face limit at time ``now`` (default: the clock).

        For live streams, between frames. Returns whether the challenge is decided.
        """
        now = float(self.clock() if now is None else now)
        if self._verdict is None and now >= self.challenge.issued_at:
            if now > self.challenge.deadline:
                self._reject_unfinished(ReasonCode.TIMEOUT, now, None)
            elif now - self._last_face_t > self.settings.max_no_face:
                self._no_face(now, None)
        return self.decided

    def finish(self, now: float | None = None) -> Decision:
        """The decision; the input ended at ``now`` (default: the last frame's time).

        An undecided challenge is rejected: ``timeout`` when ``now`` is past the
        deadline, else ``incomplete``, with the rule that was not met.
        """
        if self._verdict is None:
            end = now if now is not None else (self._last_t if self._count else self.challenge.issued_at)
            end = float(end)
            if end > self.challenge.deadline:
                self._reject_unfinished(ReasonCode.TIMEOUT, end, None)
            else:
                self._reject_unfinished(ReasonCode.INCOMPLETE, end, None)
        return self.decision()

    def decision(self) -> Decision | None:
        """The decision so far (with the trace up to now), or ``None`` when undecided."""
        if self._verdict is None:
            return None
        accepted, reasons, at, frame = self._verdict
        phases = list(self._phases)
        if not accepted and self._step < len(self._steps):
            best = self._best.get(self._step)
            if best:
                phases.append(self._phase_record(self._step, best, complete=False))
        return Decision(accepted, reasons, self.challenge, self.settings, tuple(phases),
                        tuple(self._trace), at, frame)

    def status(self, now: float | None = None) -> EngineStatus:
        """Prompt and progress for a live display at ``now`` (default: the clock)."""
        now = float(self.clock() if now is None else now)
        state = self.state
        awaiting = self.awaiting
        steps = len(self._steps)
        step = min(self._step, steps - 1)
        needed = self._needed(step)
        left = max(0.0, self.challenge.deadline - now)
        if state == ACCEPTED:
            prompt = "accepted"
        elif state == REJECTED:
            prompt = "rejected: " + "; ".join(r.message for r in self._verdict[1])
        elif now < self.challenge.issued_at:
            prompt = "get ready"
        elif step == 0:
            prompt = "look at the camera with a neutral face"
        else:
            prompt = f"now {step_instruction(awaiting)}"
        return EngineStatus(state, awaiting, step, steps, len(self._streak), needed, left, prompt)

    def refuse(self, reason: Reason, t: float, index: int | None = None) -> None:
        """Reject for a reason found outside the engine (the clip's timing or decoding),
        unless already decided; the trace and phases so far stay in the decision."""
        self._decide(False, [reason], t, index)

    # ----------------------------------------------------------------- rules

    def _step_frame(self, t: float, index: int, faces: list[FaceObservation]) -> str | None:
        s = self.settings
        if t > self.challenge.deadline:
            self._reject_unfinished(ReasonCode.TIMEOUT, t, index)
            return None
        if not faces:
            self._break_streak()
            self._extend = None
            self._wrong_runs.clear()
            if t - self._last_face_t > s.max_no_face:
                self._no_face(t, index)
            return None
        if len(faces) > 1:
            self._decide(False, [Reason(
                ReasonCode.MULTIPLE_FACES,
                f"{len(faces)} faces in view at frame {index} (t={t:.2f} s); only the person "
                "authenticating may be in view",
            )], t, index)
            return None
        face = faces[0]
        box = _as_box(face.box)
        if self._last_box is not None and not same_track(self._last_box, box, s):
            self._decide(False, [Reason(
                ReasonCode.FACE_JUMP,
                f"the face jumped at frame {index} (t={t:.2f} s): box {_fmt_box(box)} does not "
                f"continue {_fmt_box(self._last_box)}",
            )], t, index)
            return None
        self._last_box = box
        self._last_face_t = t
        distance = _distance(face.identity_distance)
        match = distance <= s.identity_threshold

        if match:
            self._mismatch_run = 0
            self._match_run += 1
            # Identity is established by a counted frame, or by the tracked face matching
            # for a few frames in a row, counted or not: a splice that swaps the person
            # before any phase completed is an identity change too.
            if self._match_run >= _ESTABLISH_FRAMES:
                self._identity_set = True
        else:
            self._match_run = 0
            if self._identity_set:
                self._mismatch_run += 1
                if self._mismatch_run >= s.identity_change_frames:
                    self._decide(False, [Reason(
                        ReasonCode.IDENTITY_CHANGED,
                        f"the tracked face stopped matching the reference for {self._mismatch_run} "
                        f"frames up to frame {index} (t={t:.2f} s; distance {distance:.3f} > "
                        f"{s.identity_threshold})",
                    )], t, index)
                    return None

        target = self._steps[self._step]
        p = self._prob(face, target, index)
        shown = self._neutral_shown(face, p) if self._step == 0 else p >= s.expression_threshold
        counted = None
        if shown and match:
            self._extend = None
            self._streak.append(_Counted(index, t, distance))
            self._identity_set = True
            counted = target
            if len(self._streak) > len(self._best.get(self._step, ())):
                self._best[self._step] = list(self._streak)
            if self._streak_done():
                self._complete_step(t, index)
        else:
            if shown:
                self._mismatched_shown[target] = self._mismatched_shown.get(target, 0) + 1
            self._break_streak()
            if self._extend is not None:
                prev = self._steps[self._step - 1]
                p_prev = self._prob(face, prev, index)
                if match and (self._neutral_shown(face, p_prev) if self._step == 1
                              else p_prev >= s.expression_threshold):
                    self._extend.append(_Counted(index, t, distance))
                    self._phases[-1] = self._phase_record(self._step - 1, self._extend, complete=True)
                    counted = prev
                else:
                    self._extend = None

        if self._verdict is None and self._step >= 1:
            self._check_wrong_expression(face, t, index)
        return counted

    def _check_wrong_expression(self, face: FaceObservation, t: float, index: int) -> None:
        s = self.settings
        guarded = (set(s.guarded_expressions) | set(self.challenge.expressions)) - {
            NEUTRAL, self._steps[self._step], self._steps[self._step - 1]}
        shown = {
            name for name, p in face.expressions.items()
            if name in guarded and _finite(p) and p >= s.expression_threshold
        }
        runs = {}
        for name in shown:
            frames, first = self._wrong_runs.get(name, (0, t))
            runs[name] = (frames + 1, first)
        self._wrong_runs = runs
        for name, (run, first) in sorted(runs.items()):
            # Held as an answer would have to be: this many frames and the answers' span,
            # so a flicker of a few frames (fewer ms at a higher frame rate) is no answer.
            if run >= s.wrong_expression_frames and t - first >= s.expression_min_duration - 1e-9:
                self._decide(False, [Reason(
                    ReasonCode.WRONG_EXPRESSION,
                    f"{name} was shown for {run} frames ({t - first:.2f} s) up to frame {index} "
                    f"(t={t:.2f} s) while {self._steps[self._step]} was asked",
                )], t, index)
                return

    def _neutral_shown(self, face: FaceObservation, p: float) -> bool:
        """Neutral (probability ``p``) is shown at ``p >= neutral_threshold`` when no other
        class is more probable: a threshold calibrated under 0.5 never lets one frame show
        Neutral and an expression at once."""
        if p < self.settings.neutral_threshold:
            return False
        return all(not _finite(q) or float(q) <= p for name, q in face.expressions.items() if name != NEUTRAL)

    def _prob(self, face: FaceObservation, name: str, index: int) -> float:
        if is_move(name):
            return self._move_prob(face, name)
        if name == NEUTRAL and self._step == 0:
            self._poses[index] = face.pose
        try:
            p = face.expressions[name]
        except KeyError:
            raise ChallengeError(
                f"frame {index}: no probability for the expression {name!r} "
                f"(have {sorted(face.expressions)})"
            ) from None
        return float(p) if _finite(p) else 0.0

    def _move_prob(self, face: FaceObservation, move: str) -> float:
        """A head-move step as a probability: 1 when the pose passes the move's threshold
        relative to the Neutral baseline (:func:`.pose.move_shown`), else 0."""
        return 1.0 if move_shown(move, face.pose, self._baseline) else 0.0

    def _set_baseline(self, frames: list[_Counted]) -> None:
        """The frontal baseline: the median pose of the frames that completed Neutral."""
        poses = [self._poses.get(c.index) for c in frames]
        self._baseline = median_pose([p for p in poses if p is not None])
        self._poses.clear()

    def _needed(self, step: int) -> int:
        s = self.settings
        return s.neutral_min_frames if step == 0 else s.expression_min_frames

    def _streak_done(self) -> bool:
        s = self.settings
        min_frames, min_span = (
            (s.neutral_min_frames, s.neutral_min_duration) if self._step == 0
            else (s.expression_min_frames, s.expression_min_duration)
        )
        return (len(self._streak) >= min_frames
                and self._streak[-1].t - self._streak[0].t >= min_span - 1e-9)  # float times

    def _complete_step(self, t: float, index: int) -> None:
        if self._step == 0:
            self._set_baseline(self._streak)
        self._phases.append(self._phase_record(self._step, self._streak, complete=True))
        self._extend = list(self._streak)
        self._streak = []
        self._wrong_runs.clear()
        self._step += 1
        if self._step == len(self._steps):
            self._decide(True, [Reason(
                ReasonCode.COMPLETED,
                f"{self.challenge.prompt()} shown in order by the enrolled identity "
                f"(completed at frame {index}, t={t:.2f} s)",
            )], t, index)

    def _break_streak(self) -> None:
        self._streak = []

    def _no_face(self, t: float, index: int | None) -> None:
        self._decide(False, [Reason(
            ReasonCode.NO_FACE,
            f"no face for {t - self._last_face_t:.2f} s (limit {self.settings.max_no_face} s) "
            f"at t={t:.2f} s",
        )], t, index)

    def _reject_unfinished(self, code: str, t: float, index: int | None) -> None:
        s = self.settings
        if code == ReasonCode.TIMEOUT:
            first = Reason(code, f"the deadline passed ({self.challenge.time_limit:.1f} s after the "
                                 f"issue) before the challenge was completed")
        else:
            first = Reason(code, f"the input ended at t={t:.2f} s before the challenge was completed")
        reasons = [first]
        target = self._steps[self._step]
        best = len(self._best.get(self._step, ()))
        if self._step == 0:
            reasons.append(Reason(
                ReasonCode.NO_NEUTRAL,
                f"neutral was not held for {s.neutral_min_frames} frames and "
                f"{s.neutral_min_duration} s by the enrolled identity (longest run: {best} frames)",
            ))
        else:
            reasons.append(Reason(
                ReasonCode.EXPRESSION_NOT_SHOWN,
                f"{target} (step {self._step} of {len(self._steps) - 1}) was not held for "
                f"{s.expression_min_frames} frames and {s.expression_min_duration} s by the enrolled "
                f"identity (longest run: {best} frames)",
            ))
        mismatched = self._mismatched_shown.get(target, 0)
        if mismatched:
            reasons.append(Reason(
                ReasonCode.IDENTITY_MISMATCH,
                f"{mismatched} frames showed {target} but the face did not match the reference "
                f"(distance > {s.identity_threshold})",
            ))
        self._decide(False, reasons, t, index)

    def _decide(self, accepted: bool, reasons: list[Reason], t: float, index: int | None) -> None:
        if self._verdict is None:
            self._verdict = (accepted, tuple(reasons), float(t), index)

    def _phase_record(self, step: int, frames: list[_Counted], complete: bool) -> PhaseRecord:
        d = [c.distance for c in frames]
        return PhaseRecord(
            name=self._steps[step], step=step, first_frame=frames[0].index,
            last_frame=frames[-1].index, start=frames[0].t, end=frames[-1].t,
            frames=len(frames), complete=complete, max_distance=max(d),
            mean_distance=sum(d) / len(d),
        )

    def _record(self, index: int, t: float, faces: list[FaceObservation],
                face: FaceObservation | None, counted: str | None) -> FrameTrace:
        if face is not None:
            distance = face.identity_distance
            distance = None if distance is None or not _finite(distance) else float(distance)
            entry = FrameTrace(
                index=index, timestamp=t, faces=len(faces), box=_as_box(face.box),
                identity_distance=distance,
                identity_match=distance is not None and distance <= self.settings.identity_threshold,
                expressions={str(k): float(v) for k, v in face.expressions.items()},
                state=self.state, awaiting=self.awaiting, counted_for=counted,
            )
        else:
            entry = FrameTrace(index, t, 0, None, None, None, None, self.state, self.awaiting, counted)
        self._trace.append(entry)
        return entry


def run_challenge(challenge: Challenge, frames: Iterable[FrameObservation],
                  settings: ChallengeSettings | None = None, *, end_time: float | None = None,
                  expression_classes: Iterable[str] | None = None,
                  stop_when_decided: bool = False) -> Decision:
    """Feed every frame to a fresh engine and return its decision (offline mode).

    ``end_time`` is when the input ended (default: the last frame's time); with
    ``stop_when_decided`` the remaining frames are not read once decided.
    """
    engine = ChallengeEngine(challenge, settings, expression_classes=expression_classes)
    for frame in frames:
        engine.observe(frame)
        if stop_when_decided and engine.decided:
            break
    return engine.finish(end_time)


def _as_box(box: Sequence[float]) -> Box:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ChallengeError(f"a face box is four numbers (x1, y1, x2, y2). Received: {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ChallengeError(f"a face box is four finite numbers (x1, y1, x2, y2). Received: {box!r}")
    return values  # type: ignore[return-value]


def _distance(value: float | None) -> float:
    if value is None or not _finite(value):
        return math.inf
    return float(value)


def _fmt_box(box: Box) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in box) + ")"
