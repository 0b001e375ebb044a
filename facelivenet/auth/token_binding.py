"""What a challenge token is bound to: the signing key's id and the session (identity,
enrolled template, model). See :mod:`facelivenet.auth.tokens` for the token itself."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from facelivenet.auth.challenge import Reason, ReasonCode
from facelivenet.errors import ChallengeError

#: Hex digits of a key id (the first 8 bytes of a domain-separated SHA-256 of the key).
KID_HEX = 16

_KID_DOMAIN = b"facelivenet-key-id-v1\0"
_TEMPLATE_DOMAIN = b"facelivenet-template-fingerprint-v1\0"



def key_id(key: bytes) -> str:
    """The key's public id: the first 8 bytes of a domain-separated SHA-256 of it, as hex.

    It names the key in tokens and nonce stores without revealing it (a hash of 32
    random bytes), so a rotated key is told apart from a forged signature.
    """
    return hashlib.sha256(_KID_DOMAIN + bytes(key)).hexdigest()[:KID_HEX]


def template_fingerprint(model_fingerprint: str, identity: str, embeddings: Any) -> str:
    """``"sha256:<hex>"`` of an enrolled template: the gallery's model fingerprint, the
    identity's name and its (K, D) embeddings as float32. A token issued for it is refused
    by a gallery where that identity's embeddings differ (replaced, swapped, re-enrolled)."""
    import numpy as np

    arr = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    h = hashlib.sha256(_TEMPLATE_DOMAIN)
    for part in (str(model_fingerprint), str(identity), f"{arr.shape}"):
        h.update(part.encode("utf-8") + b"\0")
    h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class TokenBinding:
    """The session a token is issued for, or that a verification checks against.

    Attributes:
        identity: the enrolled name (None: a reference photo, no identity).
        gallery: :func:`template_fingerprint` of that identity's template (None without one).
        model: the model's fingerprint (:func:`facelivenet.auth.gallery.model_fingerprint`).
    """

    identity: str | None = None
    gallery: str | None = None
    model: str | None = None

    @classmethod
    def for_reference(cls, model_fingerprint: str, identity: str | None = None,
                      embeddings: Any = None) -> "TokenBinding":
        """The binding of a verification: the model, and the identity with its embeddings."""
        if identity is None:
            return cls(None, None, model_fingerprint)
        if embeddings is None:
            raise ChallengeError("binding a token to an identity needs its enrolled embeddings")
        return cls(identity, template_fingerprint(model_fingerprint, identity, embeddings), model_fingerprint)


def binding_reason(claims: Any, binding: TokenBinding | None) -> Reason | None:
    """The reject reason when the token's claims (``TokenClaims``: identity, gallery, model)
    are bound to another session than ``binding``.

    A token bound to nothing (issued without an identity and model) passes any
    binding; a bound token checked without saying whom (``binding`` None) is refused.
    """
    b = binding or TokenBinding()
    if claims.identity is not None and claims.identity != b.identity:
        whom = f"identity {b.identity!r}" if b.identity is not None else "a reference photo, not an enrolled identity"
        return Reason(ReasonCode.TOKEN_IDENTITY_MISMATCH,
                      f"the challenge token was issued for identity {claims.identity!r}, but the clip is "
                      f"checked against {whom}")
    if claims.model is not None and not _same(claims.model, b.model):
        return Reason(ReasonCode.TOKEN_MODEL_MISMATCH,
                      f"the challenge token was issued for model {claims.model[:19]}…, not the model in use"
                      + (f" ({b.model[:19]}…)" if b.model else ""))
    if claims.gallery is not None and not _same(claims.gallery, b.gallery):
        return Reason(ReasonCode.TOKEN_GALLERY_MISMATCH,
                      f"the challenge token was issued for another enrolment of {claims.identity!r} (its "
                      "template in the gallery differs: another gallery, or the gallery changed)")
    return None


def _same(a: str, b: str | None) -> bool:
    return b is not None and hmac.compare_digest(a.encode("ascii"), b.encode("ascii", "replace"))
