"""The challenge-response engine: pure logic, clock and randomness injected.

A :class:`Challenge` asks for a random sequence of expressions. A
:class:`ChallengeEngine` is fed one :class:`FrameObservation` per analysed frame (the
faces in it, each with its box, its identity distance to the enrolled reference and
its expression probabilities by name) and decides, in the sense of the FaceLiveNet
papers, whether the *enrolled person* answered the challenge *live*:

1. after the challenge is issued, the tracked face shows Neutral for at least
   ``neutral_min_frames`` consecutive frames spanning ``neutral_min_duration`` seconds;
2. then each requested expression, in order, for ``expression_min_frames``
   consecutive frames with probability >= ``expression_threshold``;
3. all before the challenge's deadline;
4. identity matches the reference (squared L2 distance <= ``identity_threshold``) on
   every frame that counts for Neutral or for an expression;
5. it is the same face throughout: one face in view, no jump of the box between
   frames, no identity change after the identity was established;
6. no face for more than ``max_no_face`` seconds rejects; frames before the challenge
   was issued never count.

Time is whatever base the observations' ``timestamp`` uses: wall-clock seconds for a
live stream (the engine's ``clock``, ``time.time`` by default), seconds since the
start of the clip for an uploaded clip (see :meth:`Challenge.for_clip`). Nothing here
imports OpenCV or a deep-learning framework.

Every :class:`Decision` carries its reasons (stable machine-readable codes plus
text), the phases seen with their frame ranges, and a per-frame trace.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from facelivenet.errors import ChallengeError, ConfigError

#: The expression every challenge starts from.
NEUTRAL = "neutral"
#: Expressions a challenge is drawn from unless configured otherwise.
DEFAULT_EXPRESSIONS: tuple[str, ...] = ("happy", "surprise")
#: Number of expressions in a challenge unless configured otherwise.
DEFAULT_LENGTH = 1
#: Longest challenge sequence we issue.
MAX_LENGTH = 8
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Box = tuple[float, float, float, float]
Clock = Callable[[], float]


class ReasonCode:
    """Stable machine-readable reason codes of a :class:`Decision`."""

    COMPLETED = "completed"
    TIMEOUT = "timeout"
    INCOMPLETE = "incomplete"
    NO_NEUTRAL = "no_neutral"
    EXPRESSION_NOT_SHOWN = "expression_not_shown"
    WRONG_EXPRESSION = "wrong_expression"
    IDENTITY_MISMATCH = "identity_mismatch"
    IDENTITY_CHANGED = "identity_changed"
    FACE_JUMP = "face_jump"
    MULTIPLE_FACES = "multiple_faces"
    NO_FACE = "no_face"
    # Offline mode: the challenge token (see facelivenet.auth.tokens).
    TOKEN_EXPIRED = "token_expired"
    TOKEN_TAMPERED = "token_tampered"
    TOKEN_REUSED = "token_reused"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: a stable ``code`` and a human ``message``."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ChallengeSettings:
    """Rules of the challenge engine. Times in seconds, in the observations' time base.

    Attributes:
        neutral_min_frames: consecutive counted frames of Neutral needed first (5).
        neutral_min_duration: and the span, first to last of those frames (0.5 s).
        neutral_threshold: probability at or above which a frame shows Neutral (0.5).
        expression_min_frames: consecutive counted frames each requested expression
            must be held for (3).
        expression_min_duration: and the span of those frames (0 s: frames only).
        expression_threshold: probability at or above which a frame shows an
            expression (0.5; the model's ``expression_threshold`` via :meth:`for_model`).
        identity_threshold: squared L2 distance between unit embeddings at or below
            which the face is the enrolled person (1.1; the model's
            ``verification_threshold`` via :meth:`for_model`).
        time_limit: seconds from issue to deadline for challenges made with these
            settings (15 s).
        max_no_face: longest time without any face after the issue, or since the
            face was last seen, before rejecting (1.5 s).
        min_iou: a face is the same tracked face as in its previous frame when the
            boxes overlap with at least this IoU (0.3) ...
        max_centre_shift: ... or when its centre moved at most this fraction of the
            previous box's side (sqrt of its area) (0.35) ...
        max_scale_change: ... and its side changed by at most this factor (1.5).
        identity_change_frames: once the identity was established (a counted frame),
            this many consecutive frames of the tracked face not matching it reject
            as an identity change (8). Frames that count must match anyway; this
            only rejects a swapped face early, so it is kept loose enough for a
            genuine face whose distance wavers near the threshold.
        wrong_expression_frames: after Neutral, holding a *guarded* expression that is
            neither the awaited one nor the one just completed for this many
            consecutive frames rejects (3), so a replayed clip that shows every
            expression in turn cannot answer every challenge.
        guarded_expressions: the expressions that count as a wrong answer: these and
            the challenge's own (default: happy, surprise, the expressions challenges
            are drawn from). Other classes (fear, sad, ...) are not guarded: weak
            classifiers show them briefly on the way to an expression (surprise is
            often read as fear), and they answer no challenge.
    """

    neutral_min_frames: int = 5
    neutral_min_duration: float = 0.5
    neutral_threshold: float = 0.5
    expression_min_frames: int = 3
    expression_min_duration: float = 0.0
    expression_threshold: float = 0.5
    identity_threshold: float = 1.1
    time_limit: float = 15.0
    max_no_face: float = 1.5
    min_iou: float = 0.3
    max_centre_shift: float = 0.35
    max_scale_change: float = 1.5
    identity_change_frames: int = 8
    wrong_expression_frames: int = 3
    guarded_expressions: tuple[str, ...] = DEFAULT_EXPRESSIONS

    def __post_init__(self) -> None:
        if isinstance(self.guarded_expressions, str) or not all(
            isinstance(n, str) for n in self.guarded_expressions
        ):
            raise ConfigError(
                f"guarded_expressions must be a sequence of names. Received: {self.guarded_expressions!r}"
            )
        object.__setattr__(self, "guarded_expressions", tuple(self.guarded_expressions))
        for name in ("neutral_min_frames", "expression_min_frames", "identity_change_frames",
                     "wrong_expression_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1. Received: {name}={value!r}")
        for name in ("neutral_min_duration", "expression_min_duration", "max_no_face"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0. Received: {name}={value!r}")
        if not _finite(self.time_limit) or self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds. Received: time_limit={self.time_limit!r}")
        for name in ("neutral_threshold", "expression_threshold"):
            value = getattr(self, name)
            if not _finite(value) or not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1]. Received: {name}={value!r}")
        if not _finite(self.identity_threshold) or not 0.0 <= self.identity_threshold <= 4.0:
            raise ConfigError(
                "identity_threshold is a squared distance between unit vectors, in [0, 4]. "
                f"Received: identity_threshold={self.identity_threshold!r}"
            )
        if not _finite(self.min_iou) or not 0.0 < self.min_iou <= 1.0:
            raise ConfigError(f"min_iou must be in (0, 1]. Received: min_iou={self.min_iou!r}")
        if not _finite(self.max_centre_shift) or self.max_centre_shift < 0:
            raise ConfigError(f"max_centre_shift must be >= 0. Received: {self.max_centre_shift!r}")
        if not _finite(self.max_scale_change) or self.max_scale_change < 1.0:
            raise ConfigError(f"max_scale_change must be >= 1. Received: {self.max_scale_change!r}")

    @classmethod
    def for_model(cls, config: Any, **overrides: Any) -> "ChallengeSettings":
        """Settings whose thresholds are those of a model's :class:`NetworkConfig`."""
        values = dict(
            identity_threshold=float(config.verification_threshold),
            expression_threshold=float(config.expression_threshold),
            neutral_threshold=float(config.expression_threshold),
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> "ChallengeSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(value: Any) -> bool:
    """A real number (Python or NumPy scalar, not a bool) that is finite."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


# --------------------------------------------------------------------------- challenge


@dataclass(frozen=True)
class Challenge:
    """A request for ``expressions`` in order, from Neutral, between two times.

    Attributes:
        expressions: the requested expressions, in order (never Neutral).
        issued_at: when it was issued; frames before it never count.
        deadline: the latest frame time that still counts.
        nonce: identifier of a token-issued challenge ("" for a local one).
    """

    expressions: tuple[str, ...]
    issued_at: float
    deadline: float
    nonce: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "expressions", validate_expressions(self.expressions))
        if not _finite(self.issued_at) or not _finite(self.deadline):
            raise ChallengeError(
                f"challenge times must be finite numbers. Received: issued_at={self.issued_at!r}, "
                f"deadline={self.deadline!r}"
            )
        if self.deadline <= self.issued_at:
            raise ChallengeError(
                f"challenge deadline {self.deadline} is not after its issue time {self.issued_at}"
            )

    @property
    def time_limit(self) -> float:
        return self.deadline - self.issued_at

    @classmethod
    def for_clip(cls, expressions: Sequence[str], time_limit: float, nonce: str = "") -> "Challenge":
        """A challenge for an uploaded clip: issued at clip time 0, due ``time_limit`` s in."""
        return cls(tuple(expressions), 0.0, float(time_limit), nonce)

    def prompt(self) -> str:
        """Human instruction, e.g. ``"neutral, then happy, then surprise"``."""
        return ", then ".join((NEUTRAL,) + self.expressions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expressions": list(self.expressions),
            "issued_at": self.issued_at,
            "deadline": self.deadline,
            "time_limit": self.time_limit,
            "nonce": self.nonce or None,
        }


class ChoiceRng(Protocol):
    def choice(self, seq: Sequence[str]) -> str: ...


def validate_expressions(expressions: Iterable[str]) -> tuple[str, ...]:
    """Check a requested sequence: 1..MAX_LENGTH names, no Neutral, no immediate repeat."""
    if isinstance(expressions, str):
        raise ChallengeError(f"expressions must be a sequence of names, not the string {expressions!r}")
    names = tuple(expressions)
    if not 1 <= len(names) <= MAX_LENGTH:
        raise ChallengeError(f"a challenge asks for 1 to {MAX_LENGTH} expressions. Received: {list(names)}")
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ChallengeError(
                f"expression names are lower-case words (a-z, 0-9, _ or -). Received: {name!r}"
            )
        if name == NEUTRAL:
            raise ChallengeError("neutral is where every challenge starts; it cannot be requested")
    for a, b in zip(names, names[1:]):
        if a == b:
            raise ChallengeError(f"a challenge cannot ask for {a} twice in a row. Received: {list(names)}")
    return names


def parse_expression_list(text: str) -> tuple[str, ...]:
    """``"happy, Surprise"`` → ``("happy", "surprise")`` (distinct names, at least one)."""
    names = tuple(n.strip().lower() for n in str(text).split(",") if n.strip())
    if not names:
        raise ChallengeError(f"no expression names in {text!r}")
    if len(set(names)) != len(names):
        raise ChallengeError(f"expression names repeat in {text!r}")
    for name in names:
        if not _NAME_RE.match(name):
            raise ChallengeError(f"not an expression name: {name!r}")
        if name == NEUTRAL:
            raise ChallengeError("neutral cannot be requested: every challenge starts from it")
    return names


def random_sequence(choices: Sequence[str] = DEFAULT_EXPRESSIONS, length: int = DEFAULT_LENGTH,
                    rng: ChoiceRng | None = None) -> tuple[str, ...]:
    """``length`` expressions drawn from ``choices`` (with ``secrets`` unless ``rng`` is given).

    Consecutive expressions differ, so a longer sequence needs at least two choices.
    """
    choices = tuple(dict.fromkeys(choices))
    if not choices:
        raise ChallengeError("no expressions to draw a challenge from")
    for name in choices:
        if not isinstance(name, str) or not _NAME_RE.match(name) or name == NEUTRAL:
            raise ChallengeError(f"cannot request the expression {name!r}")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_LENGTH:
        raise ChallengeError(f"challenge length must be 1 to {MAX_LENGTH}. Received: {length!r}")
    if length > 1 and len(choices) < 2:
        raise ChallengeError(
            f"a challenge of {length} expressions needs at least two to choose from "
            f"(no expression is asked twice in a row). Received: {list(choices)}"
        )
    rng = rng or secrets.SystemRandom()
    out: list[str] = []
    for _ in range(length):
        pool = [c for c in choices if not out or c != out[-1]]
        out.append(rng.choice(pool))
    return tuple(out)


def issue_challenge(choices: Sequence[str] = DEFAULT_EXPRESSIONS, length: int = DEFAULT_LENGTH, *,
                    time_limit: float | None = None, settings: "ChallengeSettings | None" = None,
                    clock: Clock = time.time, rng: ChoiceRng | None = None,
                    nonce: str = "") -> Challenge:
    """A fresh random challenge issued now (``clock()``), due ``time_limit`` seconds later.

    ``time_limit`` defaults to ``settings.time_limit`` (15 s with default settings).
    """
    limit = time_limit if time_limit is not None else (settings or ChallengeSettings()).time_limit
    if not _finite(limit) or limit <= 0:
        raise ChallengeError(f"time limit must be > 0 seconds. Received: {limit!r}")
    now = float(clock())
    return Challenge(random_sequence(choices, length, rng), now, now + float(limit), nonce)


def check_expression_classes(challenge: Challenge, classes: Iterable[str]) -> None:
    """Raise :class:`ChallengeError` unless the model knows Neutral and every requested expression."""
    known = set(classes)
    missing = [n for n in (NEUTRAL,) + challenge.expressions if n not in known]
    if missing:
        raise ChallengeError(
            f"the model has no expression class {', '.join(map(repr, missing))}; "
            f"its classes are {sorted(known)}"
        )


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class FaceObservation:
    """One face in a frame, as the frame analyser sees it.

    Attributes:
        box: (x1, y1, x2, y2) in frame pixels.
        identity_distance: squared L2 distance of its embedding to the enrolled
            reference (the smallest over the reference's embeddings); ``None`` or NaN
            when unknown, which never matches.
        expressions: probability of each expression class, by name.
    """

    box: Box
    identity_distance: float | None
    expressions: Mapping[str, float]


@dataclass(frozen=True)
class FrameObservation:
    """All faces of one analysed frame.

    Attributes:
        timestamp: seconds, in the challenge's time base; never decreasing.
        faces: the faces detected in the frame.
        index: the frame's number in its source (for frame ranges); the count of
            observations so far when ``None``.
    """

    timestamp: float
    faces: Sequence[FaceObservation] = ()
    index: int | None = None


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def same_track(prev: Box, box: Box, settings: ChallengeSettings) -> bool:
    """Whether ``box`` continues the face seen at ``prev`` (see :class:`ChallengeSettings`)."""
    if box_iou(prev, box) >= settings.min_iou:
        return True
    side_prev, side = math.sqrt(_area(prev)), math.sqrt(_area(box))
    if side_prev <= 0 or side <= 0:
        return False
    ratio = side / side_prev
    if not 1.0 / settings.max_scale_change <= ratio <= settings.max_scale_change:
        return False
    cx0, cy0 = (prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2
    cx1, cy1 = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return math.hypot(cx1 - cx0, cy1 - cy0) <= settings.max_centre_shift * side_prev


# --------------------------------------------------------------------------- results


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
        challenge: the challenge answered.
        settings: the rules applied.
        phases: completed phases in order, then the best partial streak of the phase
            that was awaited when the engine rejected (``complete`` False).
        trace: one entry per observed frame.
        decided_at, decided_frame: time and frame index of the decision (the frame is
            ``None`` when decided without a frame, e.g. at the end of the input).
    """

    accepted: bool
    reasons: tuple[Reason, ...]
    challenge: Challenge
    settings: ChallengeSettings
    phases: tuple[PhaseRecord, ...]
    trace: tuple[FrameTrace, ...]
    decided_at: float
    decided_frame: int | None

    @classmethod
    def rejected(cls, challenge: Challenge, reasons: Sequence[Reason], *, at: float,
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
            "challenge": self.challenge.to_dict(),
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


# --------------------------------------------------------------------------- engine


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
        self._wrong_runs: dict[str, int] = {}
        self._last_box: Box | None = None
        self._last_face_t: float = challenge.issued_at
        self._identity_set = False
        self._mismatch_run = 0
        self._trace: list[FrameTrace] = []
        self._count = 0
        self._last_t = -math.inf
        self._verdict: tuple[bool, tuple[Reason, ...], float, int | None] | None = None

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
            prompt = f"now show: {awaiting}"
        return EngineStatus(state, awaiting, step, steps, len(self._streak), needed, left, prompt)

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
        elif self._identity_set:
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
        shown = p >= (s.neutral_threshold if self._step == 0 else s.expression_threshold)
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
                prev_threshold = s.neutral_threshold if self._step == 1 else s.expression_threshold
                if match and self._prob(face, prev, index) >= prev_threshold:
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
        self._wrong_runs = {name: self._wrong_runs.get(name, 0) + 1 for name in shown}
        for name, run in sorted(self._wrong_runs.items()):
            if run >= s.wrong_expression_frames:
                self._decide(False, [Reason(
                    ReasonCode.WRONG_EXPRESSION,
                    f"{name} was shown for {run} frames up to frame {index} (t={t:.2f} s) while "
                    f"{self._steps[self._step]} was asked",
                )], t, index)
                return

    def _prob(self, face: FaceObservation, name: str, index: int) -> float:
        try:
            p = face.expressions[name]
        except KeyError:
            raise ChallengeError(
                f"frame {index}: no probability for the expression {name!r} "
                f"(have {sorted(face.expressions)})"
            ) from None
        return float(p) if _finite(p) else 0.0

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
                and self._streak[-1].t - self._streak[0].t >= min_span)

    def _complete_step(self, t: float, index: int) -> None:
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
                f"{s.expression_min_frames} frames by the enrolled identity (longest run: {best} frames)",
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
