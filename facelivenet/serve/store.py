"""Server-side challenges: issued for one identity, spent once, expiring.

:class:`ChallengeStore` is the small interface the server needs; :class:`SQLiteChallengeStore`
is the embedded implementation (one SQLite file in WAL mode, shared by every worker
process on one host). :meth:`spend` is one conditional ``UPDATE`` inside ``BEGIN
IMMEDIATE``: of two uploads racing on one challenge exactly one gets it. A multi-host
deployment implements the same four methods on a database server (PostgreSQL:
``UPDATE challenges SET spent_at = now() WHERE id = $1 AND spent_at IS NULL AND
expiry > now() RETURNING ...``), or Redis (``GETDEL``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from facelivenet.errors import NonceStoreError

#: Bytes of randomness in a challenge id (URL-safe base64 in the id).
CHALLENGE_ID_BYTES = 24
#: Spent or expired challenges are kept this long (seconds) for the answers "used" / "expired".
KEEP_SECONDS = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS challenges (
    id          TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    expressions TEXT NOT NULL,
    issued      REAL NOT NULL,
    expiry      REAL NOT NULL,
    spent_at    REAL
);
CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges (expiry);
"""


@dataclass(frozen=True)
class StoredChallenge:
    """A challenge as issued: for ``identity``, the ``expressions`` after Neutral, valid until ``expiry``."""

    id: str
    identity: str
    expressions: tuple[str, ...]
    issued: float
    expiry: float
    spent_at: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "identity": self.identity, "expressions": list(self.expressions),
                "issued": round(self.issued, 3), "expiry": round(self.expiry, 3),
                "expires_in": max(0, round(self.expiry - time.time(), 3))}


class ChallengeStore(Protocol):
    """What the server needs of a challenge store (see the module docstring for other back-ends)."""

    def issue(self, identity: str, expressions: Sequence[str], ttl: float) -> StoredChallenge: ...

    def get(self, challenge_id: str) -> StoredChallenge | None: ...

    def spend(self, challenge_id: str) -> StoredChallenge | None:
        """Mark it spent and return it; None when unknown, expired or already spent."""


class SQLiteChallengeStore:
    """:class:`ChallengeStore` in the SQLite file ``path`` (WAL mode, created on first use)."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.path = Path(path)
        self.clock = clock
        self.timeout = timeout

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise NonceStoreError(f"{self.path}: cannot open the challenge store ({exc})") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise NonceStoreError(f"{self.path}: challenge store error ({exc})") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    @staticmethod
    def _row(row) -> StoredChallenge | None:
        if row is None:
            return None
        return StoredChallenge(row[0], row[1], tuple(row[2].split(",")), row[3], row[4], row[5])

    def issue(self, identity: str, expressions: Sequence[str], ttl: float) -> StoredChallenge:
        now = float(self.clock())
        c = StoredChallenge(secrets.token_urlsafe(CHALLENGE_ID_BYTES), identity, tuple(expressions), now, now + ttl)
        with self._connect() as conn:
            conn.execute("DELETE FROM challenges WHERE expiry < ?", (now - KEEP_SECONDS,))
            conn.execute("INSERT INTO challenges (id, identity, expressions, issued, expiry) VALUES (?, ?, ?, ?, ?)",
                         (c.id, c.identity, ",".join(c.expressions), c.issued, c.expiry))
        return c

    def get(self, challenge_id: str) -> StoredChallenge | None:
        with self._connect() as conn:
            return self._row(conn.execute("SELECT id, identity, expressions, issued, expiry, spent_at FROM challenges "
                                          "WHERE id = ?", (str(challenge_id),)).fetchone())

    def spend(self, challenge_id: str) -> StoredChallenge | None:
        now = float(self.clock())
        with self._connect() as conn:
            cur = conn.execute("UPDATE challenges SET spent_at = ? WHERE id = ? AND spent_at IS NULL AND expiry > ?",
                               (now, str(challenge_id), now))
            if cur.rowcount != 1:
                return None
            return self._row(conn.execute("SELECT id, identity, expressions, issued, expiry, spent_at "
                                          "FROM challenges WHERE id = ?", (str(challenge_id),)).fetchone())
