"""Challenges: the requested sequence, drawn with ``secrets``, and the one validator of expression names."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

from facelivenet.auth.challenge.settings import (
    DEFAULT_EXPRESSIONS, DEFAULT_LENGTH, MAX_LENGTH, NEUTRAL, _NAME_RE, ChallengeSettings, Clock, _finite,
)
from facelivenet.auth.challenge.pose import MOVES
from facelivenet.errors import ChallengeError

#: What ``facelivenet challenge`` draws from by default: two expressions the model
#: tells apart well and the three head moves; three steps, no step twice in a row:
#: 5 x 4 x 4 = 80 possible challenges, log2(80) = 6.3 bits.
DEFAULT_CHALLENGE_CHOICES: tuple[str, ...] = ("happy", "surprise") + MOVES
DEFAULT_CHALLENGE_LENGTH = 3


def challenge_count(choices: Sequence[str], length: int) -> int:
    """How many challenges :func:`random_sequence` can draw: n * (n - 1) ** (length - 1)."""
    n = len(dict.fromkeys(choices))
    return n * (n - 1) ** (length - 1) if n and length >= 1 else 0


def challenge_entropy(choices: Sequence[str], length: int) -> float:
    """Bits of a challenge drawn uniformly (each step uniform over the choices that
    differ from the previous step): log2 of :func:`challenge_count`."""
    import math

    count = challenge_count(choices, length)
    return math.log2(count) if count else 0.0


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


def check_expression_name(name: object) -> str:
    """The one validator of a requested expression's name: a lower-case word (a-z, 0-9,
    ``_`` or ``-``, at most 32 characters) that is not Neutral. Returns it."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ChallengeError(f"expression names are lower-case words (a-z, 0-9, _ or -). Received: {name!r}")
    if name == NEUTRAL:
        raise ChallengeError("neutral is where every challenge starts; it cannot be requested")
    return name


def validate_expressions(expressions: Iterable[str]) -> tuple[str, ...]:
    """Check a requested sequence: 1..MAX_LENGTH names, no Neutral, no immediate repeat."""
    if isinstance(expressions, str):
        raise ChallengeError(f"expressions must be a sequence of names, not the string {expressions!r}")
    names = tuple(expressions)
    if not 1 <= len(names) <= MAX_LENGTH:
        raise ChallengeError(f"a challenge asks for 1 to {MAX_LENGTH} expressions. Received: {list(names)}")
    for name in names:
        check_expression_name(name)
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
        check_expression_name(name)
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
        check_expression_name(name)
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
    """Raise :class:`ChallengeError` unless the model knows Neutral and every requested
    expression (head moves, :data:`.pose.MOVES`, are measured from landmarks, not classes)."""
    known = set(classes) | set(MOVES)
    missing = [n for n in (NEUTRAL,) + challenge.expressions if n not in known]
    if missing:
        raise ChallengeError(
            f"the model has no expression class {', '.join(map(repr, missing))}; "
            f"its classes are {sorted(known)}"
        )
