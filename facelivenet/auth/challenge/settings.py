"""The engine's settings and the constants every challenge shares."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Callable

from facelivenet.errors import ConfigError



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




@dataclass(frozen=True)
class ChallengeSettings:
    """Rules of the challenge engine. Times in seconds, in the observations' time base.

    Attributes:
        neutral_min_frames: consecutive counted frames of Neutral needed first (5).
        neutral_min_duration: and the span, first to last of those frames (0.5 s).
        neutral_threshold: probability at or above which a frame shows Neutral, when no
            other class is more probable (0.5; the model's ``neutral_threshold`` via
            :meth:`for_model`, calibrated on held-out faces, else its ``expression_threshold``).
        expression_min_frames: consecutive counted frames each requested expression
            must be held for (3).
        expression_min_duration: and the span of those frames (0.3 s), so a flash of a
            few frames at a high frame rate does not answer.
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
        max_center_shift: ... or when its centre moved at most this fraction of the
            previous box's side (sqrt of its area) (0.35) ...
        max_scale_change: ... and its side changed by at most this factor (1.5).
        identity_change_frames: once the identity was established (a counted frame, or
            3 consecutive frames of the tracked face matching, counted or not), this
            many consecutive frames of the tracked face not matching it reject
            as an identity change (8). Frames that count must match anyway; this
            only rejects a swapped face early, so it is kept loose enough for a
            genuine face whose distance wavers near the threshold.
        wrong_expression_frames: after Neutral, holding a *guarded* expression that is
            neither the awaited one nor the one just completed for this many
            consecutive frames rejects (3), so a replayed clip that shows every
            expression in turn cannot answer every challenge. The run must also span
            ``expression_min_duration``, as an answer must: a flicker shorter than
            any answer is no answer to another challenge, and a clip that could
            answer that challenge holds the expression at least this long.
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
    expression_min_duration: float = 0.3
    expression_threshold: float = 0.5
    identity_threshold: float = 1.1
    time_limit: float = 15.0
    max_no_face: float = 1.5
    min_iou: float = 0.3
    max_center_shift: float = 0.35
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
        if not _finite(self.max_center_shift) or self.max_center_shift < 0:
            raise ConfigError(f"max_center_shift must be >= 0. Received: {self.max_center_shift!r}")
        if not _finite(self.max_scale_change) or self.max_scale_change < 1.0:
            raise ConfigError(f"max_scale_change must be >= 1. Received: {self.max_scale_change!r}")

    @classmethod
    def for_model(cls, config: Any, **overrides: Any) -> "ChallengeSettings":
        """Settings whose thresholds are those of a model's :class:`NetworkConfig`."""
        values = dict(
            identity_threshold=float(config.verification_threshold),
            expression_threshold=float(config.expression_threshold),
            neutral_threshold=float(config.expression_threshold if getattr(config, "neutral_threshold", None) is None
                                    else config.neutral_threshold),
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
