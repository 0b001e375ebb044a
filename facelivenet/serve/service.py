"""One worker's facelivenet: the model and detector (loaded once, on first use), the
challenge store, the attempt limiter and the gallery, behind the calls the HTTP layer makes.

Everything here is a library call: the decision is :meth:`FaceAuth.authenticate`'s
document, the gallery is read and written only through :mod:`facelivenet.auth.gallery`'s
public functions. The network runs one request at a time per worker (a lock): workers
are processes, so ``--workers N`` runs N analyses at once.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from facelivenet.auth.challenge import random_sequence
from facelivenet.auth.limits import AttemptLimiter, Lockout, client_key, identity_key
from facelivenet.errors import GalleryError
from facelivenet.serve.settings import ServeSettings
from facelivenet.serve.store import SQLiteChallengeStore, StoredChallenge

#: Bytes of randomness in the folder name of a decision's audit images.
AUDIT_ID_BYTES = 24


class ChallengeUnavailable(Exception):
    """An upload's challenge is unknown, spent or expired (``code`` says which)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Service:
    """The library behind the HTTP endpoints of one worker process."""

    def __init__(self, settings: ServeSettings, *, auth: Any = None):
        self.settings = settings
        Path(settings.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = SQLiteChallengeStore(settings.challenges_db)
        self.limiter = AttemptLimiter(settings.attempts_db, policy=settings.limits)
        self._auth = auth
        self._load_lock = threading.Lock()
        self.run_lock = threading.Lock()

    # --- the model, once per worker ------------------------------------------------------
    @property
    def auth(self):
        if self._auth is None:
            with self._load_lock:
                if self._auth is None:
                    from facelivenet.facade import FaceAuth

                    self._auth = FaceAuth(self.settings.model, detect_max_side=self.settings.detect_max_side,
                                          runtime=self.settings.runtime, precision=self.settings.precision)
        return self._auth

    @property
    def loaded(self) -> bool:
        return self._auth is not None

    # --- gallery ---------------------------------------------------------------------------
    def _gallery(self):
        from facelivenet.auth.gallery import open_gallery

        if self.settings.gallery is None:
            raise GalleryError("the server has no gallery (start it with --gallery FILE)")
        return open_gallery(self.settings.gallery, self.auth.model, create=True)

    def names(self) -> list[str]:
        return self._gallery().names()

    def enroll(self, name: str, photos: Sequence[Path]) -> dict[str, Any]:
        from facelivenet.auth.gallery import DetectorCropper, enroll

        if self.settings.gallery is None:
            raise GalleryError("the server has no gallery (start it with --gallery FILE)")
        with self.run_lock:  # the gallery locks its own writes
            result = enroll(self.settings.gallery, name, photos, self.auth.model,
                            cropper=DetectorCropper.for_model(self.auth.config))
        d = result.to_dict()
        d.pop("gallery", None)  # the server's file path is not the client's business
        return d

    def remove(self, name: str) -> dict[str, Any]:
        from facelivenet.auth.gallery import remove_identity

        if self.settings.gallery is None:
            raise GalleryError("the server has no gallery (start it with --gallery FILE)")
        removed, left = remove_identity(self.settings.gallery, name)  # under the gallery's own lock
        return {"removed": name, "embeddings": int(removed.embeddings.shape[0]), "identities": left}

    # --- challenges ------------------------------------------------------------------------
    def lockout(self, identity: str, client: str) -> Lockout | None:
        return self.limiter.check([identity_key(identity), client_key(client)])

    def issue(self, identity: str) -> StoredChallenge:
        gallery = self._gallery()
        if identity not in gallery.names():
            raise GalleryError(f"no identity {identity!r} in the gallery")
        return self.store.issue(identity, random_sequence(self.settings.challenge_choices,
                                                                self.settings.challenge_length),
                                self.settings.challenge_ttl)

    def spend(self, challenge_id: str) -> StoredChallenge:
        """The challenge, now spent; :class:`ChallengeUnavailable` if it cannot be."""
        spent = self.store.spend(challenge_id)
        if spent is not None:
            return spent
        known = self.store.get(challenge_id)
        if known is None:
            raise ChallengeUnavailable("challenge_not_found", "no such challenge")
        if known.spent_at is not None:
            raise ChallengeUnavailable("challenge_used", "the challenge was already answered; ask for a new one")
        raise ChallengeUnavailable("challenge_expired", "the challenge expired; ask for a new one")

    def authenticate(self, challenge: StoredChallenge, clip: Path, client: str) -> tuple[dict[str, Any], str | None]:
        """The decision document of ``clip`` answering ``challenge`` and the audit folder's id."""
        gallery = self._gallery()
        reference = gallery.embeddings(challenge.identity)
        with self.run_lock:
            outcome = self.auth.authenticate(clip, reference, challenge=list(challenge.expressions),
                                             identity=challenge.identity, limits=self.limiter,
                                             detect_max_side=self.settings.detect_max_side)
        if outcome.clip is not None and not outcome.accepted:
            self.limiter.record([client_key(client)], success=False)
        audit_id, audit = None, None
        if outcome.clip is not None:
            from facelivenet.auth.audit import write_audit

            self.prune_audit()
            audit_id = secrets.token_urlsafe(AUDIT_ID_BYTES)
            audit = write_audit(self.settings.audit_dir / audit_id, outcome.decision, clip)
        return outcome.report(reference={"identity": challenge.identity}, audit=_as_urls(audit, audit_id)), audit_id

    # --- audit images ----------------------------------------------------------------------
    def audit_file(self, audit_id: str, name: str) -> Path | None:
        """The audit image ``name`` of decision ``audit_id`` while it lasts (None otherwise)."""
        if not (audit_id.replace("-", "").replace("_", "").isalnum() and name.endswith(".png")
                and "/" not in name and not name.startswith(".")):
            return None
        d = self.settings.audit_dir / audit_id
        path = d / name
        try:
            if time.time() - d.stat().st_mtime > self.settings.audit_ttl or not path.is_file():
                return None
        except OSError:
            return None
        return path

    def prune_audit(self) -> None:
        root = self.settings.audit_dir
        if not root.is_dir():
            return
        for d in root.iterdir():
            try:
                if time.time() - d.stat().st_mtime > self.settings.audit_ttl:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass


def _as_urls(audit: dict[str, Any] | None, audit_id: str | None) -> dict[str, Any] | None:
    """The audit section with the server's file paths replaced by the images' short-lived URLs."""
    if audit is None:
        return None
    base = f"/v1/audit/{audit_id}/"

    def url(path: str) -> str:
        return base + Path(path).name

    reference = audit["reference"]
    return {"dir": base, "reference": None if reference is None else {**reference, "path": url(reference["path"])},
            "frames": [{**f, "path": url(f["path"])} for f in audit["frames"]]}
