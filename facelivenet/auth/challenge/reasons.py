"""Reason codes and reasons of a challenge decision (stable, machine-readable)."""

from __future__ import annotations

from dataclasses import dataclass



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
    # Live mode: the user closed the window (or pressed q) before a decision.
    CANCELLED = "cancelled"
    # Offline mode: the challenge token (see facelivenet.auth.tokens).
    TOKEN_EXPIRED = "token_expired"
    TOKEN_TAMPERED = "token_tampered"
    TOKEN_REUSED = "token_reused"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_MALFORMED = "token_malformed"
    # Offline mode: a token signed by a key this verifier does not hold (a rotated key).
    TOKEN_UNKNOWN_KEY = "token_unknown_key"
    # Offline mode: a token bound to another identity, enrolled template or model.
    TOKEN_IDENTITY_MISMATCH = "token_identity_mismatch"
    TOKEN_GALLERY_MISMATCH = "token_gallery_mismatch"
    TOKEN_MODEL_MISMATCH = "token_model_mismatch"
    # Too many failed attempts on this identity or client (facelivenet.auth.limits).
    LOCKED_OUT = "locked_out"
    # Offline mode: the clip's frame times cannot be trusted (declared rate, timestamps).
    CLIP_TIMING = "clip_timing"
    # Offline mode: the clip stopped decoding well before its declared last frame.
    CLIP_CORRUPT = "clip_corrupt"


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: a stable ``code`` and a human ``message``."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
