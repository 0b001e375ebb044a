"""The protected gallery file: encrypted and authenticated, written atomically, edited under a lock.

Embeddings are biometric templates (ISO/IEC 24745 asks for their confidentiality and
integrity), so a gallery file (version 2) holds them only sealed with AES-256-GCM::

    {"format": "facelivenet-gallery", "version": 2, "cipher": "AES-256-GCM",
     "key_id": "<16 hex>", "nonce": "<base64url>", "data": "<base64url>"}

``data`` is the encrypted gallery document (model fingerprint, embedding size, names,
embeddings, sources: everything) with its 16-byte tag; every other field is the
associated data, so the format version, the cipher and the key id are authenticated
too. Any edit, truncation, splice of another gallery's bytes or document re-sealed
under another key fails the tag check and is refused with one line.

The key is a separate ``gallery.key`` beside the challenge key, read and created by
the same :func:`facelivenet.auth.tokens.load_key` (regular file, at most 4 KiB, mode
0600, owned by the user, in a folder others cannot write). Separate, not derived from
the challenge key, because the two live differently: rotating the challenge key (a
leaked token key) must not make every enrolled gallery unreadable, and a leaked
challenge key must not open the templates. The AES key and the key id are derived
from the file's bytes with HKDF-SHA256 under distinct labels.

What this does not stop: someone who can write the file can put back an older
version of it, or another gallery sealed under the same key (both are authentic).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterator

from facelivenet.auth.configdir import config_dir
from facelivenet.errors import GalleryError, GalleryIntegrityError, TokenError

GALLERY_FORMAT = "facelivenet-gallery"
#: Version of the protected file; version 1 was the plain JSON document.
GALLERY_VERSION = 2
PLAIN_VERSION = 1
CIPHER = "AES-256-GCM"
#: File name of the default gallery key inside the config directory.
GALLERY_KEY_FILE_NAME = "gallery.key"
#: Largest gallery file we read (bytes).
MAX_GALLERY_BYTES = 256 * 1024 * 1024
NONCE_BYTES = 12
_HEADER_KEYS = {"format", "version", "cipher", "key_id", "nonce"}
_AAD_DOMAIN = b"facelivenet-gallery-aad\0"


# --------------------------------------------------------------------------- key


class GalleryKey:
    """The AES-256 key of galleries and its public id, derived from a key file's bytes."""

    def __init__(self, secret: bytes):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        def derive(label: bytes, n: int) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=n, salt=None, info=label).derive(secret)

        self._aes = derive(b"facelivenet gallery AES-256-GCM key v2", 32)
        self.key_id = derive(b"facelivenet gallery key id v2", 8).hex()

    def aead(self) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._aes)


def default_gallery_key_path() -> Path:
    return config_dir() / GALLERY_KEY_FILE_NAME


def gallery_key(path: str | os.PathLike | None = None, *, create: bool = False) -> GalleryKey:
    """The gallery key from ``path`` (default: ``gallery.key`` in the config directory).

    Created when missing and ``create`` (enrolment, upgrade); a reader never creates
    one, since a fresh key cannot open any existing gallery.
    """
    from facelivenet.auth.tokens import load_key

    p = Path(path) if path is not None else default_gallery_key_path()
    if not create and not p.exists():
        raise GalleryError(f"{p}: no gallery key; a protected gallery opens only with the key it was "
                           "sealed with (gallery.key in the facelivenet config folder, $FACELIVENET_CONFIG_DIR)")
    try:
        return GalleryKey(load_key(p, create=create))
    except TokenError as exc:
        raise GalleryError(f"gallery key: {exc}") from None


# --------------------------------------------------------------------------- container


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: Any, what: str, source: str) -> bytes:
    """Strict base64url: one spelling per byte string (re-encoding gives ``text`` back)."""
    if not isinstance(text, str):
        raise GalleryError(f"{source}: not a valid gallery file ({what} is not a string)")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        data = None
    if data is None or _b64(data) != text:
        raise GalleryIntegrityError(f"{source}: not a valid gallery file ({what} is not base64url)")
    return data


def _aad(header: dict[str, Any]) -> bytes:
    return _AAD_DOMAIN + json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")


def seal(document: bytes, key: GalleryKey) -> bytes:
    """The protected file's bytes for the gallery ``document`` (JSON bytes)."""
    nonce = secrets.token_bytes(NONCE_BYTES)  # random 96-bit nonce, fresh for every save
    header = {"format": GALLERY_FORMAT, "version": GALLERY_VERSION, "cipher": CIPHER,
              "key_id": key.key_id, "nonce": _b64(nonce)}
    data = key.aead().encrypt(nonce, document, _aad(header))
    return (json.dumps({**header, "data": _b64(data)}, separators=(",", ":")) + "\n").encode("ascii")


def parse_container(raw: bytes, source: str) -> dict[str, Any]:
    """The outer JSON object of a gallery file (either version), or :class:`GalleryError`."""
    if not raw.strip():
        raise GalleryError(f"{source}: empty file, not a gallery")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GalleryError(f"{source}: not a gallery file (not JSON; a truncated or edited file?)") from None
    if not isinstance(data, dict) or data.get("format") != GALLERY_FORMAT:
        raise GalleryError(f"{source}: not a valid gallery file (no \"format\": \"{GALLERY_FORMAT}\")")
    return data


def is_plain(container: dict[str, Any]) -> bool:
    """Whether a parsed gallery file is a version-1 (plain, unprotected) gallery."""
    return type(container.get("version")) is int and container["version"] == PLAIN_VERSION


def unseal(container: dict[str, Any], key: GalleryKey | None, source: str) -> bytes:
    """The gallery document sealed in ``container``; :class:`GalleryIntegrityError` if forged.

    ``key`` defaults to the user's gallery key, read only once the file's form is
    checked (a plain gallery is told to upgrade whether a key exists or not).
    """
    version = container.get("version")
    if is_plain(container):
        raise GalleryError(f"{source}: a plain (unprotected) gallery of an older facelivenet; "
                           f"protect it first: facelivenet gallery upgrade {source}")
    if type(version) is not int or version != GALLERY_VERSION:
        raise GalleryError(f"{source}: not a valid gallery file (unsupported version {version!r})")
    if set(container) != _HEADER_KEYS | {"data"}:
        raise GalleryError(f"{source}: not a valid gallery file (unexpected keys {sorted(map(str, container))})")
    if container["cipher"] != CIPHER:
        raise GalleryError(f"{source}: not a valid gallery file (unsupported cipher {container['cipher']!r})")
    nonce = _unb64(container["nonce"], "nonce", source)
    data = _unb64(container["data"], "data", source)
    if len(nonce) != NONCE_BYTES:
        raise GalleryError(f"{source}: not a valid gallery file (a nonce of {len(nonce)} bytes)")
    key = key or gallery_key()
    if container["key_id"] != key.key_id:
        raise GalleryIntegrityError(
            f"{source}: the gallery is refused: it was not sealed with this gallery key (key id "
            f"{str(container['key_id'])[:16]!r}, this key {key.key_id}); a copied or forged gallery, or the wrong key")
    from cryptography.exceptions import InvalidTag

    header = {k: container[k] for k in _HEADER_KEYS}
    try:
        return key.aead().decrypt(nonce, data, _aad(header))
    except InvalidTag:
        raise GalleryIntegrityError(
            f"{source}: the gallery is refused: it fails its integrity check (edited, truncated or "
            "spliced since it was written)") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# --------------------------------------------------------------------------- files


def target_path(path: str | os.PathLike) -> Path:
    """Where writes to ``path`` go: a symlinked gallery is updated at its target."""
    return Path(os.path.realpath(path))


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a gallery file (bounded, regular file), or :class:`GalleryError`."""
    p = Path(path)
    if not p.exists():
        raise GalleryError(f"{p}: no such gallery file")
    if p.is_dir():
        raise GalleryError(f"{p}: is a directory, not a gallery file")
    try:
        st = p.stat()
        if not p.is_file():
            raise GalleryError(f"{p}: not a regular file, not a gallery")
        if st.st_size > MAX_GALLERY_BYTES:
            raise GalleryError(f"{p}: {st.st_size:,} bytes is too large for a gallery file")
        with open(p, "rb") as f:
            return f.read(MAX_GALLERY_BYTES + 1)
    except GalleryError:
        raise
    except OSError as exc:
        raise GalleryError(f"{p}: cannot read the gallery ({exc.strerror or exc})") from None


def write_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path``'s target atomically with mode 0600; the path written.

    A temporary file is created exclusively (mode 0600) in the target's folder,
    written and fsynced, then renamed over the target, and the folder is fsynced:
    a crash leaves the old gallery or the new one, never a mix or a partial file.
    """
    target = target_path(path)
    if target.is_dir():
        raise GalleryError(f"{path}: is a directory, not a gallery file")
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise GalleryError(f"{path}: cannot write the gallery ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the gallery at ``path``: ``<target>.lock`` beside its target."""
    target = target_path(path)
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the gallery at ``path`` (blocking); yield its target.

    Every writer (enrol, remove, upgrade) takes it, then reads the gallery again, so
    concurrent writers are serialised and none loses the other's change. The lock
    file stays (removing it would let two writers lock two different files).
    """
    lp = lock_path(path)
    try:
        lp.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lp, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise GalleryError(f"{lp}: cannot open the gallery's lock file ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield target_path(path)
    finally:
        os.close(fd)  # closing releases the lock
