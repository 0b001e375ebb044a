"""Single-use challenge nonces, recorded in a local SQLite database.

:meth:`NonceStore.consume` marks a nonce used inside one ``BEGIN IMMEDIATE``
transaction, so two verifications racing on the same token cannot both succeed, and
a crash mid-write leaves the database as it was (SQLite's journal). Rows of tokens
long expired are pruned: an expired token is rejected before its nonce is looked at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable, Iterator

from facelivenet.auth.paths import config_dir
from facelivenet.errors import NonceStoreError

#: File name of the default database inside the user's facelivenet config directory.
NONCE_DB_NAME = "used-nonces.sqlite3"
#: Rows are kept this long after their token expired (seconds) before pruning.
PRUNE_GRACE = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_nonces (
    nonce   TEXT PRIMARY KEY,
    used_at REAL NOT NULL,
    expiry  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS used_nonces_expiry ON used_nonces (expiry);
"""


def default_nonce_db() -> Path:
    """``<config dir>/used-nonces.sqlite3`` (see :func:`facelivenet.auth.paths.config_dir`)."""
    return config_dir() / NONCE_DB_NAME


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
        if self.path.is_dir():
            raise NonceStoreError(f"{self.path}: is a directory, not a nonce database")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise NonceStoreError(f"{self.path}: cannot open the nonce database ({exc})") from None
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise NonceStoreError(f"{self.path}: nonce database error ({exc})") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def consume(self, nonce: str, expiry: float, now: float | None = None) -> bool:
        """Mark ``nonce`` used; False when it was already used (nothing is changed then)."""
        now = float(self.clock() if now is None else now)
        with self._connect(write=True) as conn:
            conn.execute("DELETE FROM used_nonces WHERE expiry < ?", (now - PRUNE_GRACE,))
            try:
                conn.execute(
                    "INSERT INTO used_nonces (nonce, used_at, expiry) VALUES (?, ?, ?)",
                    (str(nonce), now, float(expiry)),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def is_used(self, nonce: str) -> bool:
        """Whether ``nonce`` was consumed (and not yet pruned)."""
        if not self.path.exists():
            return False
        with self._connect(write=False) as conn:
            row = conn.execute("SELECT 1 FROM used_nonces WHERE nonce = ?", (str(nonce),)).fetchone()
        return row is not None

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self._connect(write=False) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM used_nonces").fetchone()[0])
