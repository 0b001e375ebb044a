"""The offline (uploaded clip) mode's challenge: from ``--token`` or ``--challenge``.

``verify-video`` answers either a signed single-use token (``--token T``) or an
explicit sequence (``--challenge happy,surprise``, for tests and one-off checks).
The order of operations that keeps a token single-use without burning it on a typo:

1. :func:`prepare_offline_challenge` parses and checks the token (key id, signature,
   expiry, binding to the identity/template/model checked, not yet used) *without*
   consuming it; a bad one (malformed, unknown key, tampered, expired, bound to another
   session, used) gives a ``rejection`` (exit 1, nothing else needs to be read): a
   token that does not parse is refused like a tampered one, as ``token_malformed``;
2. the clip is opened and analysed;
3. :meth:`OfflineChallenge.consume` checks the expiry again (a token that expired
   during the analysis is refused as ``token_expired``) and records the nonce
   (atomically) before the decision is reported; if another verification used it
   meanwhile, the answer is a ``token_reused`` rejection.

:func:`authenticate_clip` is that whole use case in one call (the CLI's
``verify-video``, the demo, the facade's ``authenticate`` and the attack suite run it).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from facelivenet.auth.challenge import (
    Challenge, ChallengeSettings, Decision, Reason, ReasonCode, validate_expressions,
)
from facelivenet.auth.nonces import NonceStore
from facelivenet.auth.tokens import TokenBinding, TokenClaims, expired_reason, verify_token
from facelivenet.errors import ChallengeError, FaceCountError, InputError, TokenError


@dataclass(frozen=True)
class OfflineChallenge:
    """The challenge a clip must answer.

    Attributes:
        challenge: in clip time (issued at 0, due ``settings.time_limit`` seconds in);
            ``None`` for a token that did not parse.
        claims: the token's claims (``None`` for ``--challenge``).
        rejection: the token's reject reason, if it was already refused.
    """

    challenge: Challenge | None
    claims: TokenClaims | None
    rejection: Reason | None

    def rejected_decision(self, settings: ChallengeSettings | None = None) -> Decision:
        """The reject decision for a refused token (no frame was read)."""
        if self.rejection is None:
            raise ChallengeError("the challenge was not rejected")
        return Decision.rejected(self.challenge, [self.rejection], at=0.0, settings=settings)

    def consume(self, nonces: NonceStore | None, now: float | None = None, *,
                clock: Callable[[], float] = time.time) -> Reason | None:
        """Mark the token used; ``token_expired`` if it expired meanwhile (it is then not
        recorded), ``token_reused`` if it already was used."""
        if self.claims is None:
            return None
        now = float(clock() if now is None else now)
        expired = expired_reason(self.claims, now, when=", during the analysis")
        if expired is not None:
            return expired
        if nonces is None:
            return None
        if nonces.consume(self.claims.nonce, self.claims.expiry, now, kid=self.claims.kid or None):
            return None
        return Reason(ReasonCode.TOKEN_REUSED,
                      "the challenge token was already used; each token answers one clip only")


def parse_challenge_sequence(text: str) -> tuple[str, ...]:
    """``"happy,surprise"`` → the sequence, in the given order (validated)."""
    names = [n.strip().lower() for n in str(text).split(",")]
    if any(not n for n in names):
        raise ChallengeError(f"empty expression name in {text!r}")
    return validate_expressions(names)


def prepare_offline_challenge(*, token: str | None = None, expressions: str | Sequence[str] | None = None,
                              settings: ChallengeSettings | None = None, key: bytes | None = None,
                              nonces: NonceStore | None = None,
                              clock: Callable[[], float] = time.time,
                              binding: TokenBinding | None = None, check_binding: bool = True,
                              previous_keys: Sequence[bytes] = ()) -> OfflineChallenge:
    """The challenge for ``token`` (checked, not consumed) or for ``expressions``.

    Exactly one of ``token`` and ``expressions`` is given; a token needs ``key``, and
    is checked against ``binding`` (whom and with what model the clip is verified: a
    token bound to another session is refused; None = no identity, no model known).
    ``previous_keys`` verify tokens signed before a key rotation. ``check_binding=False``
    is for a first look before the reference is known (the CLI's early check).
    """
    settings = settings or ChallengeSettings()
    if (token is None) == (expressions is None):
        raise ChallengeError("give either a challenge token or a challenge (expressions), not both or neither")
    if expressions is not None:
        seq = parse_challenge_sequence(expressions) if isinstance(expressions, str) else validate_expressions(expressions)
        return OfflineChallenge(Challenge.for_clip(seq, settings.time_limit), None, None)
    if key is None:
        raise ChallengeError("a challenge token needs the signing key")
    try:
        check = verify_token(token, key, nonces=nonces, consume=False, clock=clock, binding=binding,
                             check_binding=check_binding, previous_keys=previous_keys)
    except TokenError as exc:
        return OfflineChallenge(None, None, Reason(ReasonCode.TOKEN_MALFORMED, str(exc)))
    return OfflineChallenge(check.claims.challenge_for_clip(settings.time_limit), check.claims, check.reason)


@dataclass
class Authentication:
    """What :func:`authenticate_clip` decided.

    Attributes:
        decision: the engine's decision (or the token's rejection).
        clip: the clip's analysis (None when the token was refused before any frame).
        claims: the token's claims (None for an explicit challenge).
    """

    decision: Decision
    clip: Any | None
    claims: TokenClaims | None

    @property
    def accepted(self) -> bool:
        return self.decision.accepted

    @property
    def frames_analyzed(self) -> int:
        return self.clip.frames_analyzed if self.clip is not None else 0

    def report(self, *, reference: Any = None, clip: str | os.PathLike | None = None, stride: int = 1,
               include_trace: bool = False, audit: Any = None) -> dict[str, Any]:
        """The decision document (:func:`facelivenet.auth.decision.decision_report`): the same
        contract as ``verify-video --json`` and ``realtime --headless``.

        Args:
            reference: how the reference was given (e.g. ``{"ref": "me.jpg"}``).
            clip: the clip's path, for the report.
            stride: the analysis stride (the report's ``fps`` is the analysed rate).
        """
        from facelivenet.auth.decision import decision_report

        token = self.claims.to_dict() if self.claims is not None else None
        if self.clip is None:
            return decision_report(self.decision, frames_analyzed=0, reference=reference, token=token,
                                   clip=None if clip is None else str(clip), audit=audit)
        r = self.clip
        return decision_report(
            self.decision, frames_analyzed=r.frames_analyzed, fps=r.info.fps / stride, reference=reference,
            token=token, clip=None if clip is None else str(clip), include_trace=include_trace, audit=audit,
            processing={
                "frames_per_second": r.processing_fps,
                "detect_seconds": r.seconds["detect"],
                "network_seconds": r.seconds["network"],
                "total_seconds": r.seconds["total"],
                "stopped_at_decision": r.stopped_early,
            },
        )


def authenticate_clip(clip: str | os.PathLike, analyzer: Any, reference: np.ndarray, *,
                      settings: ChallengeSettings, token: str | None = None,
                      challenge: str | Sequence[str] | None = None, key: bytes | None = None,
                      nonces: NonceStore | None = None, stride: int = 1,
                      on_frames: Callable[[int], None] | None = None,
                      clock: Callable[[], float] = time.time,
                      binding: TokenBinding | None = None,
                      previous_keys: Sequence[bytes] = (), limits: Any = None,
                      limit_keys: Sequence[str] = ()) -> Authentication:
    """The offline challenge-response use case: token (or challenge) → clip → decision.

    The token is checked first (a refused token is a reject before any frame is read;
    ``binding`` says whom and with which model the clip is checked), the clip is
    analysed, and only then is the token consumed: if it expired during the analysis
    the decision becomes a ``token_expired`` reject, if another verification spent it
    meanwhile a ``token_reused`` one.

    With ``limits`` (an :class:`~facelivenet.auth.limits.AttemptLimiter`) and
    ``limit_keys`` (e.g. ``identity:alice``), a locked key is a ``locked_out`` reject
    before the token is spent or a frame read, and every other decision counts as a
    success or a failure of those keys.

    Raises:
        InputError: the clip has no face in any analysed frame (unusable input: the
            token is not spent on it), or the clip cannot be read.
    """
    if limits is not None and limit_keys:
        lock = limits.check(limit_keys)
        if lock is not None:
            offline = prepare_offline_challenge(token=token, expressions=challenge, settings=settings, key=key,
                                                nonces=nonces, clock=clock)
            decision = Decision.rejected(offline.challenge, [lock.reason(limits.policy)], at=0.0, settings=settings)
            return Authentication(decision, None, offline.claims)
        outcome = authenticate_clip(clip, analyzer, reference, settings=settings, token=token, challenge=challenge,
                                    key=key, nonces=nonces, stride=stride, on_frames=on_frames, clock=clock,
                                    binding=binding, previous_keys=previous_keys)
        limits.record(limit_keys, success=outcome.accepted)
        return outcome
    from facelivenet.auth.verify import verify_clip

    offline = prepare_offline_challenge(token=token, expressions=challenge, settings=settings, key=key,
                                        nonces=nonces, clock=clock, binding=binding,
                                        previous_keys=previous_keys)
    if offline.rejection is not None:
        return Authentication(offline.rejected_decision(settings), None, offline.claims)
    result = verify_clip(clip, analyzer, reference, offline.challenge, settings, stride=stride, on_frames=on_frames)
    clip_refused = {ReasonCode.CLIP_TIMING, ReasonCode.CLIP_CORRUPT} & set(result.decision.codes)
    if result.frames_analyzed and not clip_refused and not any(a.faces for a in result.analyses):
        raise FaceCountError(f"{clip}: no face found in any of its {result.frames_analyzed} analysed frames")
    decision = result.decision
    refused = offline.consume(nonces, clock=clock)
    if refused is not None:
        decision = dataclasses.replace(decision, accepted=False, reasons=(refused,))
    return Authentication(decision, result, offline.claims)
