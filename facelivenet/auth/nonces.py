"""Single-use challenge nonces, recorded in a local SQLite database.

:meth:`NonceStore.consume` marks a nonce used inside one ``BEGIN IMMEDIATE``
transaction, so two verifications racing on the same token cannot both succeed, and
a crash mid-write leaves the database as it was (SQLite's journal). Rows of tokens
long expired are pruned: an expired token is rejected before its nonce is looked at.

A store serves one signing key: it records the key's id (``kid``) with its first
nonce and refuses, with :class:`~facelivenet.errors.NonceStoreError`, a nonce of
another key (a store shared by two keys, or a key swapped under a store, is a
misconfiguration that would let spent tokens of one key pass the other's store).
The default store lives beside the key (:func:`nonce_db_for_key`), in the same
private folder, so whoever points ``--nonce-db`` elsewhere still has the token
recorded in the key's own store (:class:`NonceStores`).

What this cannot stop: whoever can delete (or roll back) the store beside the key can
replay a token within its lifetime, and a copy of the key in another folder has its
own empty store. Hence the short token lifetime (180 s by default).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from facelivenet.auth.configdir import config_dir
from facelivenet.auth.sqlitedb import transaction
from facelivenet.errors import NonceStoreError

#: File name of the default database inside the user's facelivenet config directory.
NONCE_DB_NAME = "used-nonces.sqlite3"
#: The default signing key's file name (``facelivenet.auth.tokens.KEY_FILE_NAME``; not
#: imported: tokens imports this module).
DEFAULT_KEY_NAME = "challenge.key"
#: Rows are kept this long after their token expired (seconds) before pruning.
PRUNE_GRACE = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_nonces (
    nonce   TEXT PRIMARY KEY,
    used_at REAL NOT NULL,
    expiry  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS used_nonces_expiry ON used_nonces (expiry);
CREATE TABLE IF NOT EXISTS store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def default_nonce_db() -> Path:
    """``<config dir>/used-nonces.sqlite3`` (see :func:`facelivenet.auth.configdir.config_dir`):
    the store beside the default key."""
    return config_dir() / NONCE_DB_NAME


def nonce_db_for_key(key_path: str | os.PathLike | None) -> Path:
    """The store beside a key file: ``used-nonces.sqlite3`` beside a ``challenge.key`` (the
    config directory's default key, wherever that directory is: the same key gets the same
    store whichever config directory points at it), ``<key file>.used-nonces.sqlite3``
    beside any other key file."""
    if key_path is None:
        return default_nonce_db()
    p = Path(key_path)
    if p.name == DEFAULT_KEY_NAME:
        return p.with_name(NONCE_DB_NAME)
    return p.with_name(p.name + "." + NONCE_DB_NAME)


class NonceStore:
    """The set of used nonces, in the SQLite file ``path`` (created on first use).

    Args:
        path: database file; the default is :func:`default_nonce_db`.
        clock: time source for ``used_at`` and pruning.
        timeout: seconds to wait for another process holding the write lock.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0):
        self.path = Path(path) if path is not None else default_nonce_db()
        self.clock = clock
        self.timeout = timeout

    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        with transaction(self.path, _SCHEMA, "nonce database", timeout=self.timeout, write=write) as conn:
            yield conn

    def _check_kid(self, conn: sqlite3.Connection, kid: str | None, *, record: bool) -> None:
        """Refuse a nonce of another key than the one this store serves (record it first time)."""
        if kid is None:
            return
        row = conn.execute("SELECT value FROM store_meta WHERE name = 'kid'").fetchone()
        if row is None:
            if record:
                conn.execute("INSERT INTO store_meta (name, value) VALUES ('kid', ?)", (str(kid),))
            return
        if row[0] != kid:
            raise NonceStoreError(
                f"{self.path}: this nonce database serves key {row[0]}, not key {kid}; each key has its own "
                "store (by default beside the key file)"
            )

    def kid(self) -> str | None:
        """The id of the key this store serves (None until its first nonce)."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT value FROM store_meta WHERE name = 'kid'").fetchone()
        return None if row is None else str(row[0])

    def consume(self, nonce: str, expiry: float, now: float | None = None, *, kid: str | None = None) -> bool:
        """Mark ``nonce`` (of the key ``kid``) used; False when it was already used (nothing is
        changed then). A store that serves another key raises :class:`NonceStoreError`."""
        now = float(self.clock() if now is None else now)
        with self._connect(write=True) as conn:
            self._check_kid(conn, kid, record=True)
            conn.execute("DELETE FROM used_nonces WHERE expiry < ?", (now - PRUNE_GRACE,))
            try:
                conn.execute(
                    "INSERT INTO used_nonces (nonce, used_at, expiry) VALUES (?, ?, ?)",
                    (str(nonce), now, float(expiry)),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def is_used(self, nonce: str, *, kid: str | None = None) -> bool:
        """Whether ``nonce`` was consumed (and not yet pruned); a store of another key than
        ``kid`` raises :class:`NonceStoreError`."""
        if not self.path.exists():
            return False
        with self._connect(write=False) as conn:
            self._check_kid(conn, kid, record=False)
            row = conn.execute("SELECT 1 FROM used_nonces WHERE nonce = ?", (str(nonce),)).fetchone()
        return row is not None

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM used_nonces").fetchone()[0])


class NonceStores:
    """Several stores answering as one: a nonce is used if any of them has it, and
    consuming records it in each, the first (the store beside the key) deciding.

    ``verify-video --nonce-db OTHER`` checks OTHER *and* the key's own store, so a spent
    token does not pass again through a fresh ``--nonce-db``.
    """

    def __init__(self, stores: Sequence[NonceStore]):
        unique: dict[Path, NonceStore] = {}
        for store in stores:
            unique.setdefault(_resolved(store.path), store)
        if not unique:
            raise NonceStoreError("no nonce store given")
        self.stores = tuple(unique.values())
        self.path = self.stores[0].path

    def consume(self, nonce: str, expiry: float, now: float | None = None, *, kid: str | None = None) -> bool:
        for store in self.stores:  # stop at the first that knows it: nothing else changes then
            if not store.consume(nonce, expiry, now, kid=kid):
                return False
        return True

    def is_used(self, nonce: str, *, kid: str | None = None) -> bool:
        return any(store.is_used(nonce, kid=kid) for store in self.stores)


def key_nonce_stores(key_path: str | os.PathLike | None, nonce_db: str | os.PathLike | None = None,
                     **kwargs: object) -> NonceStores:
    """The store beside the key (:func:`nonce_db_for_key`), plus ``nonce_db`` when given."""
    stores = [NonceStore(nonce_db_for_key(key_path), **kwargs)]  # type: ignore[arg-type]
    if nonce_db is not None:
        stores.append(NonceStore(nonce_db, **kwargs))  # type: ignore[arg-type]
    return NonceStores(stores)


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except OSError:
        return p.absolute()
