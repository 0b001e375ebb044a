"""The settings of ``facelivenet serve`` (one frozen dataclass; the CLI fills it from its options)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from facelivenet.auth.challenge import DEFAULT_CHALLENGE_CHOICES, DEFAULT_CHALLENGE_LENGTH
from facelivenet.auth.limits import LimitPolicy
from facelivenet.config import DETECT_MAX_SIDE

#: Defaults of the upload caps: bytes, seconds of clip, longest side in pixels.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_CLIP_SECONDS = 30.0
MAX_CLIP_SIDE = 1920
#: Challenge lifetime (seconds) and how long a decision's audit images can be fetched.
CHALLENGE_TTL = 180.0
AUDIT_TTL = 600.0


@dataclass(frozen=True)
class ServeSettings:
    """What a server needs to know.

    Attributes:
        state_dir: private folder of the challenge store, the attempt counts and the
            audit images (shared by the workers of one host).
        model: model file (None: the bundled default or ``$FACELIVENET_MODEL``).
        gallery: the enrolment gallery (None: no identities; challenges are refused).
        api_key: the key of the admin endpoints (enrol, gallery); None turns them off.
        cors_origins: origins allowed by CORS (empty: CORS off, the default).
        runtime: ``auto``, ``keras`` or ``onnx`` (:mod:`facelivenet.runtime`); None: the
            default (``auto``: ONNX Runtime unless the model's ONNX files cannot be had).
        precision: ``fp32`` or ``int8`` (on onnx; :mod:`facelivenet.runtime.quantize`); None: fp32.
        challenge_choices, challenge_length: what a challenge is drawn from and how many
            steps it has (the library's default: more than 6 bits, expressions and head
            moves, as ``facelivenet challenge`` issues).
    """

    state_dir: Path
    model: str | os.PathLike | None = None
    gallery: Path | None = None
    api_key: bytes | None = None
    challenge_ttl: float = CHALLENGE_TTL
    audit_ttl: float = AUDIT_TTL
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_photo_bytes: int = MAX_PHOTO_BYTES
    max_clip_seconds: float = MAX_CLIP_SECONDS
    max_clip_side: int = MAX_CLIP_SIDE
    limits: LimitPolicy = field(default_factory=LimitPolicy)
    cors_origins: tuple[str, ...] = ()
    detect_max_side: int | None = DETECT_MAX_SIDE
    runtime: str | None = None
    precision: str | None = None
    challenge_choices: tuple[str, ...] = DEFAULT_CHALLENGE_CHOICES
    challenge_length: int = DEFAULT_CHALLENGE_LENGTH

    @property
    def challenges_db(self) -> Path:
        return Path(self.state_dir) / "challenges.sqlite3"

    @property
    def attempts_db(self) -> Path:
        return Path(self.state_dir) / "attempts.sqlite3"

    @property
    def audit_dir(self) -> Path:
        return Path(self.state_dir) / "audit"
