"""What the engine answers: the decision with its reasons, phases and per-frame trace."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from facelivenet.auth.challenge.reasons import Reason
from facelivenet.auth.challenge.settings import Box, ChallengeSettings
from facelivenet.auth.challenge.sequences import Challenge


#: Engine states (``FrameTrace.state``).
WAITING, AWAIT_NEUTRAL, AWAIT_EXPRESSION, ACCEPTED, REJECTED = (
    "waiting", "neutral", "expression", "accept", "reject",
)


@dataclass(frozen=True)
class FrameTrace:
    """What the engine saw and did on one frame.

    Attributes:
        index, timestamp: the frame.
        faces: number of faces in it.
        box, identity_distance, identity_match, expressions: of the tracked face
            (the first face), ``None`` without a face.
        state: engine state after the frame (``waiting`` before the issue,
            ``neutral``, ``expression``, ``accept``, ``reject``).
        awaiting: the expression awaited after the frame (``None`` when decided).
        counted_for: the phase this frame counted for, if any.
    """

    index: int
    timestamp: float
    faces: int
    box: Box | None
    identity_distance: float | None
    identity_match: bool | None
    expressions: dict[str, float] | None
    state: str
    awaiting: str | None
    counted_for: str | None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["box"] = list(self.box) if self.box is not None else None
        return d


@dataclass(frozen=True)
class PhaseRecord:
    """A phase (Neutral or a requested expression) as seen in the frames.

    Attributes:
        name: ``neutral`` or the expression.
        step: 0 for Neutral, i + 1 for the i-th requested expression.
        first_frame, last_frame: frame indices of its first and last counted frames
            (a completed phase extends while the expression is still held).
        start, end: their timestamps.
        frames: number of counted frames.
        complete: whether the phase met its minimum (an incomplete one is the best
            streak seen for the phase the engine was waiting on).
        max_distance, mean_distance: identity distance over the counted frames.
    """

    name: str
    step: int
    first_frame: int
    last_frame: int
    start: float
    end: float
    frames: int
    complete: bool
    max_distance: float
    mean_distance: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Decision:
    """The engine's verdict with its reasons, the phases seen and the per-frame trace.

    Attributes:
        accepted: True for accept.
        reasons: why (an accept has the single reason ``completed``).
        challenge: the challenge answered (``None`` only for a token that did not
            parse, so no challenge could be read from it).
        settings: the rules applied.
        phases: completed phases in order, then the best partial streak of the phase
            that was awaited when the engine rejected (``complete`` False).
        trace: one entry per observed frame.
        decided_at, decided_frame: time and frame index of the decision (the frame is
            ``None`` when decided without a frame, e.g. at the end of the input).
    """

    accepted: bool
    reasons: tuple[Reason, ...]
    challenge: Challenge | None
    settings: ChallengeSettings
    phases: tuple[PhaseRecord, ...]
    trace: tuple[FrameTrace, ...]
    decided_at: float
    decided_frame: int | None

    @classmethod
    def rejected(cls, challenge: Challenge | None, reasons: Sequence[Reason], *, at: float,
                 settings: ChallengeSettings | None = None) -> "Decision":
        """A rejection made before any frame was looked at (e.g. an expired token)."""
        return cls(False, tuple(reasons), challenge, settings or ChallengeSettings(), (), (), float(at), None)

    @property
    def decision(self) -> str:
        return "accept" if self.accepted else "reject"

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    def to_dict(self, include_trace: bool = True) -> dict[str, Any]:
        d = {
            "decision": self.decision,
            "reasons": [r.to_dict() for r in self.reasons],
            "challenge": self.challenge.to_dict() if self.challenge is not None else None,
            "settings": self.settings.to_dict(),
            "phases": [p.to_dict() for p in self.phases],
            "decided_at": self.decided_at,
            "decided_frame": self.decided_frame,
        }
        if include_trace:
            d["trace"] = [t.to_dict() for t in self.trace]
        return d


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for a live display: what to prompt and how far along.

    Attributes:
        state: as in :class:`FrameTrace`.
        awaiting: the expression awaited (``None`` when waiting or decided).
        step, steps: index of the awaited step (0 = Neutral) and number of steps.
        streak, needed: counted frames in a row for the awaited step, and the minimum.
        time_left: seconds to the deadline at ``now`` (never negative).
        prompt: an instruction for the user.
    """

    state: str
    awaiting: str | None
    step: int
    steps: int
    streak: int
    needed: int
    time_left: float
    prompt: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
