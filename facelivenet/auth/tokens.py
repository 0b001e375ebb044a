"""Signed single-use challenge tokens for the offline (uploaded clip) mode.

A token is ``<payload>.<signature>``, both unpadded base64url. The payload is compact
JSON ``{"expiry":…,"expressions":[…],"gallery":…,"identity":…,"issued":…,"kid":"…",
"model":…,"nonce":"…","v":2}`` (times in whole Unix seconds); the signature is
HMAC-SHA256 under a secret key over a fixed domain prefix and the encoded payload,
written one way only: the unpadded base64url of exactly the 32 MAC bytes (any other
spelling of the same bytes is refused as malformed).

A token is bound to a session (:class:`TokenBinding`): the identity it was issued for,
the fingerprint of that identity's enrolled template (:func:`template_fingerprint`:
the gallery's model fingerprint, the name and the embeddings) and the model's
fingerprint. A verification against another identity, another template or another
model is refused (``token_identity_mismatch``, ``token_gallery_mismatch``,
``token_model_mismatch``). A token issued without an identity binds nothing of the
kind (for ``--ref`` photos); it says so with nulls. ``kid`` is :func:`key_id` of the
signing key, so a verifier whose key was rotated answers ``token_unknown_key``, not
"tampered", and may also be given the previous key. The key lives in the user's config directory
(``$FACELIVENET_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/facelivenet``, else
``~/.config/facelivenet``), created with 0600 permissions, or in an explicit key file.

:func:`verify_token` answers a :class:`TokenCheck`: the parsed claims, and a reject
:class:`~facelivenet.auth.challenge.Reason` when the token is tampered with, expired,
not yet valid, signed by an unknown key, bound to another session, or already used
(its nonce is in the :class:`NonceStore`, which serves one key id). A string
that does not parse as a token raises :class:`~facelivenet.errors.TokenError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from facelivenet.auth.challenge import (
    DEFAULT_EXPRESSIONS, DEFAULT_LENGTH, Challenge, ChoiceRng, Reason, ReasonCode,
    random_sequence, validate_expressions,
)
from facelivenet.auth.nonces import NonceStore
from facelivenet.auth.token_binding import (  # noqa: F401 (re-exported)
    KID_HEX, TokenBinding, binding_reason, key_id, template_fingerprint,
)
from facelivenet.auth.configdir import CONFIG_ENV, config_dir  # noqa: F401 (re-exported)
from facelivenet.errors import ChallengeError, TokenError

#: File name of the default signing key inside the config directory.
KEY_FILE_NAME = "challenge.key"
#: Token payload format version (2: key id and session binding).
TOKEN_VERSION = 2
#: Default and largest token lifetime, seconds.
DEFAULT_TTL = 180
MAX_TTL = 7 * 86400
#: Clock skew tolerated for a token issued "in the future", seconds.
ISSUE_LEEWAY = 30
#: Longest string we try to parse as a token.
MAX_TOKEN_CHARS = 4096
#: Bytes of randomness in a nonce (hex-encoded in the payload).
NONCE_BYTES = 16
KEY_BYTES = 32

#: Longest identity name a token carries (the gallery's limit).
MAX_IDENTITY_CHARS = 128

_DOMAIN = b"facelivenet-challenge-token-v2."
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_NONCE_RE = re.compile(r"^[0-9a-f]{%d}$" % (2 * NONCE_BYTES))
_KID_RE = re.compile(r"^[0-9a-f]{%d}$" % KID_HEX)
_FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_KEYS = {"v", "kid", "nonce", "expressions", "issued", "expiry", "identity", "gallery", "model"}


#: Largest key file read (a key is 32+ bytes as hex; anything far bigger is not a key).
MAX_KEY_FILE_BYTES = 4096


def default_key_path() -> Path:
    return config_dir() / KEY_FILE_NAME


# --------------------------------------------------------------------------- key


def load_key(path: str | os.PathLike | None = None, *, create: bool = True) -> bytes:
    """The signing key from ``path`` (default: the config directory's ``challenge.key``).

    A missing file is created (when ``create``) with a fresh 32-byte random key,
    hex-encoded, mode 0600, atomically: a concurrent creator's key wins, never a
    mix. An existing file must be readable by its owner only and hold at least 32
    bytes as hex; otherwise :class:`TokenError` says why.
    """
    p = Path(path) if path is not None else default_key_path()
    if p.is_dir():
        raise TokenError(f"{p}: is a directory, not a key file")
    if not p.exists():
        if not create:
            raise TokenError(f"{p}: no such key file")
        _create_key(p)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
            raise TokenError(f"{p}: not a regular file; a key file is a plain file of hex digits")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise TokenError(f"{p}: {st.st_size:,} bytes; a key file holds at most {MAX_KEY_FILE_BYTES} bytes")
        if os.name == "posix" and st.st_mode & 0o077:
            raise TokenError(
                f"{p}: key file is accessible by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {p}"
            )
        if os.name == "posix" and st.st_uid != os.geteuid():
            raise TokenError(f"{p}: key file belongs to another user (uid {st.st_uid}); use a key of your own")
        parent = p.resolve().parent.stat()
        if os.name == "posix" and parent.st_mode & 0o002 and not parent.st_mode & stat.S_ISVTX:
            raise TokenError(f"{p.parent}: the key file's folder is writable by everyone; others could replace "
                             "the key: move it to a private folder")
        text = p.read_text(encoding="ascii").strip()
    except TokenError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"{p}: cannot read the key file ({exc})") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise TokenError(f"{p}: not a key file (expected hex digits)") from None
    if len(key) < KEY_BYTES:
        raise TokenError(f"{p}: key is {len(key)} bytes; at least {KEY_BYTES} are needed")
    return key


def _create_key(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)  # mode 0600
    except OSError as exc:
        raise TokenError(f"{p}: cannot create the key file ({exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, p)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            try:
                fd2 = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd2, "w", encoding="ascii") as f:
                    f.write(Path(tmp).read_text(encoding="ascii"))
    except OSError as exc:
        raise TokenError(f"{p}: cannot create the key file ({exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenClaims:
    """What a token says: a challenge, its nonce, its validity window (Unix seconds), the
    id of the key that signed it and the session it is bound to (None: not bound)."""

    nonce: str
    expressions: tuple[str, ...]
    issued: int
    expiry: int
    kid: str = ""
    identity: str | None = None
    gallery: str | None = None
    model: str | None = None

    @property
    def binding(self) -> TokenBinding:
        return TokenBinding(self.identity, self.gallery, self.model)

    def challenge_for_clip(self, time_limit: float) -> Challenge:
        """The challenge a clip answering this token must meet (clip time from 0)."""
        return Challenge.for_clip(self.expressions, time_limit, nonce=self.nonce)

    def to_dict(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "expressions": list(self.expressions),
                "issued": self.issued, "expiry": self.expiry, "kid": self.kid,
                "identity": self.identity, "gallery": self.gallery, "model": self.model}


@dataclass(frozen=True)
class TokenCheck:
    """Result of :func:`verify_token`: the claims, and the reject reason if any."""

    claims: TokenClaims
    reason: Reason | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(f"malformed challenge token: its {what} is not base64url") from None
    return data


def _sign(key: bytes, payload_b64: str) -> bytes:
    return hmac.new(key, _DOMAIN + payload_b64.encode("ascii"), hashlib.sha256).digest()


def issue_token(key: bytes, choices: Sequence[str] = DEFAULT_EXPRESSIONS,
                length: int = DEFAULT_LENGTH, ttl: int = DEFAULT_TTL, *,
                binding: TokenBinding | None = None,
                clock: Callable[[], float] = time.time,
                rng: ChoiceRng | None = None) -> tuple[str, TokenClaims]:
    """A fresh signed token for a random challenge of ``length`` steps from ``choices``,
    bound to ``binding`` (default: bound to nothing)."""
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
        raise ChallengeError(f"token lifetime must be 1 to {MAX_TTL} seconds. Received: ttl={ttl!r}")
    b = binding or TokenBinding()
    issued = int(clock())
    claims = TokenClaims(secrets.token_hex(NONCE_BYTES), random_sequence(choices, length, rng),
                         issued, issued + ttl, key_id(key), b.identity, b.gallery, b.model)
    _check_binding_claims(claims.identity, claims.gallery, claims.model, ChallengeError)
    return encode_token(key, claims), claims


def encode_token(key: bytes, claims: TokenClaims) -> str:
    """The signed compact token for ``claims`` (its ``kid`` is the key's)."""
    payload = json.dumps(
        {"v": TOKEN_VERSION, "kid": key_id(key), "nonce": claims.nonce, "expressions": list(claims.expressions),
         "issued": int(claims.issued), "expiry": int(claims.expiry), "identity": claims.identity,
         "gallery": claims.gallery, "model": claims.model},
        separators=(",", ":"), sort_keys=True, ensure_ascii=True,
    ).encode("ascii")
    payload_b64 = _b64encode(payload)
    return f"{payload_b64}.{_b64encode(_sign(key, payload_b64))}"


def parse_token(token: str) -> tuple[TokenClaims, str, bytes]:
    """Split and decode a token without checking its signature.

    Returns (claims, encoded payload, signature). Raises :class:`TokenError` for
    anything that is not a well-formed token.
    """
    if not isinstance(token, str):
        raise TokenError(f"malformed challenge token: expected a string, got {type(token).__name__}")
    text = token.strip()
    if not text:
        raise TokenError("malformed challenge token: empty")
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenError(f"malformed challenge token: {len(text)} characters (at most {MAX_TOKEN_CHARS})")
    if not _TOKEN_RE.match(text):
        raise TokenError("malformed challenge token: expected <payload>.<signature> in base64url")
    payload_b64, sig_b64 = text.split(".")
    payload = _b64decode(payload_b64, "payload")
    signature = _b64decode(sig_b64, "signature")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError("malformed challenge token: its payload is not JSON") from None
    return _claims(data), payload_b64, signature


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_binding_claims(identity: Any, gallery: Any, model: Any, error: type[Exception]) -> None:
    if identity is not None and (not isinstance(identity, str) or not 0 < len(identity) <= MAX_IDENTITY_CHARS):
        raise error(f"malformed challenge token: identity must be a name of 1 to {MAX_IDENTITY_CHARS} characters")
    for name, value in (("gallery", gallery), ("model", model)):
        if value is not None and (not isinstance(value, str) or not _FINGERPRINT_RE.match(value)):
            raise error(f"malformed challenge token: {name} must be a sha256 fingerprint")
    if (identity is None) != (gallery is None):
        raise error("malformed challenge token: an identity is bound together with its gallery template")


def _claims(data: Any) -> TokenClaims:
    if not isinstance(data, dict):
        raise TokenError("malformed challenge token: its payload is not a JSON object")
    if set(data) != _KEYS:
        raise TokenError(
            f"malformed challenge token: payload keys {sorted(map(str, data))}, expected {sorted(_KEYS)}"
        )
    if type(data["v"]) is not int or data["v"] != TOKEN_VERSION:
        raise TokenError(f"malformed challenge token: unsupported version {data['v']!r}")
    kid = data["kid"]
    if not isinstance(kid, str) or not _KID_RE.match(kid):
        raise TokenError("malformed challenge token: bad key id")
    nonce = data["nonce"]
    if not isinstance(nonce, str) or not _NONCE_RE.match(nonce):
        raise TokenError("malformed challenge token: bad nonce")
    issued, expiry = data["issued"], data["expiry"]
    for name, value in (("issued", issued), ("expiry", expiry)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
            raise TokenError(f"malformed challenge token: {name} is not a time in whole seconds")
    if expiry <= issued:
        raise TokenError("malformed challenge token: expiry is not after issue")
    expressions = data["expressions"]
    if not isinstance(expressions, list):
        raise TokenError("malformed challenge token: expressions is not a list")
    try:
        names = validate_expressions(expressions)
    except ChallengeError as exc:
        raise TokenError(f"malformed challenge token: {exc}") from None
    _check_binding_claims(data["identity"], data["gallery"], data["model"], TokenError)
    return TokenClaims(nonce, names, issued, expiry, kid, data["identity"], data["gallery"], data["model"])


def expired_reason(claims: TokenClaims, now: float, *, when: str = "") -> Reason | None:
    """The ``token_expired`` reason when ``now`` is at or past the token's expiry."""
    if now < claims.expiry:
        return None
    return Reason(
        ReasonCode.TOKEN_EXPIRED,
        f"the challenge token expired {now - claims.expiry:.0f} s ago{when} "
        f"(it was valid for {claims.expiry - claims.issued} s)",
    )


def verify_token(token: str, key: bytes, *, nonces: NonceStore | None = None,
                 consume: bool = True, now: float | None = None,
                 clock: Callable[[], float] = time.time,
                 previous_keys: Sequence[bytes] = (),
                 binding: TokenBinding | None = None, check_binding: bool = False) -> TokenCheck:
    """Check a token: key id and signature, validity window, binding, then single use.

    Args:
        token: the token string.
        key: the signing key (:func:`load_key`).
        nonces: the store of used nonces; without one, reuse is not checked. It
            serves one key id: a store of another key raises ``NonceStoreError``.
        consume: mark the nonce used when everything else is fine (the token then
            cannot be used again). With ``consume=False`` a used nonce is still
            reported; call :meth:`NonceStore.consume` later, when the clip has been
            read, and reject with ``token_reused`` if it returns False.
        now: the current time (default: ``clock()``).
        previous_keys: keys that signed tokens still in flight (after a rotation).
        binding: the session this verification checks (identity, template, model);
            with ``check_binding`` (implied when ``binding`` is given) a token bound
            to another is refused.

    Raises:
        TokenError: the string is not a well-formed token.
    """
    claims, payload_b64, signature = parse_token(token)
    now = float(clock() if now is None else now)
    keys = {key_id(k): k for k in (*previous_keys, key)}
    signer = keys.get(claims.kid)
    if signer is None:
        return TokenCheck(claims, Reason(
            ReasonCode.TOKEN_UNKNOWN_KEY,
            f"the challenge token was signed by key {claims.kid}, which this verifier does not have (its key is "
            f"{key_id(key)}): the key was rotated? Give the previous key file too, or issue a new token",
        ))
    expected = _sign(signer, payload_b64)
    # The signature's text is compared, not its decoded bytes: one spelling only (the
    # unpadded base64url of the 32 MAC bytes), never the 3 others that decode the same.
    if not hmac.compare_digest(_b64encode(expected), token.strip().rsplit(".", 1)[1]):
        canonical = hmac.compare_digest(expected, signature)
        return TokenCheck(claims, Reason(
            ReasonCode.TOKEN_TAMPERED,
            "the challenge token's signature is not written in its one canonical encoding (unpadded base64url)"
            if canonical else
            "the challenge token's signature does not match: it was altered or signed with another key",
        ))
    if claims.issued > now + ISSUE_LEEWAY:
        return TokenCheck(claims, Reason(
            ReasonCode.TOKEN_NOT_YET_VALID,
            f"the challenge token was issued {claims.issued - now:.0f} s in the future (clock skew?)",
        ))
    expired = expired_reason(claims, now)
    if expired is not None:
        return TokenCheck(claims, expired)
    if check_binding or binding is not None:
        mismatch = binding_reason(claims, binding)
        if mismatch is not None:
            return TokenCheck(claims, mismatch)
    if nonces is not None:
        if consume:
            used = not nonces.consume(claims.nonce, claims.expiry, now, kid=claims.kid)
        else:
            used = nonces.is_used(claims.nonce, kid=claims.kid)
        if used:
            return TokenCheck(claims, Reason(
                ReasonCode.TOKEN_REUSED,
                "the challenge token was already used; each token answers one clip only",
            ))
    return TokenCheck(claims, None)
