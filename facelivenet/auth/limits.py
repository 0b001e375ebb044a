"""Attempt limits: too many failed authentications lock an identity (and a client) for a while.

The anti-hammering Azure Face and AWS Rekognition document: an attacker who may try
without end will eventually find a clip, a look-alike or a threshold edge that passes.
:class:`AttemptLimiter` counts the failed attempts of each *key* (``identity:NAME`` for
an enrolled identity; the server adds ``client:ADDRESS``) in a sliding window; when a key
reaches ``max_failures`` within ``window`` seconds it is locked for ``lockout`` seconds,
and every attempt on it meanwhile is refused with the reason ``locked_out`` and the
time left, before a frame is read. A success clears the key's failures.

The counts live in a SQLite database in WAL mode (``attempts.sqlite3``, beside the
nonce store: :func:`default_attempts_db`), written inside ``BEGIN IMMEDIATE``
transactions, so several processes (server workers, CLI runs) share one count. The
clock is injectable: the tests drive the window and the lock with a fake one.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from facelivenet.auth.challenge import Reason, ReasonCode
from facelivenet.auth.configdir import config_dir
from facelivenet.auth.sqlitedb import transaction
from facelivenet.errors import ConfigError

#: File name of the default database, beside the nonce store in the config directory.
ATTEMPTS_DB_NAME = "attempts.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failed_attempts (
    key TEXT NOT NULL,
    at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS failed_attempts_key ON failed_attempts (key, at);
CREATE TABLE IF NOT EXISTS lockouts (
    key   TEXT PRIMARY KEY,
    until REAL NOT NULL
);
"""


def default_attempts_db() -> Path:
    """``<config dir>/attempts.sqlite3``, beside the default nonce store."""
    return config_dir() / ATTEMPTS_DB_NAME


def identity_key(name: str) -> str:
    """The limiter key of an enrolled identity."""
    return f"identity:{name}"


def client_key(address: str) -> str:
    """The limiter key of a client (the server uses the peer address)."""
    return f"client:{address}"


@dataclass(frozen=True)
class LimitPolicy:
    """``max_failures`` failed attempts within ``window`` seconds lock a key for ``lockout`` seconds."""

    max_failures: int = 5
    window: float = 600.0
    lockout: float = 900.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_failures, int) or self.max_failures < 1:
            raise ConfigError(f"max_failures must be a positive integer. Received: {self.max_failures!r}")
        for name in ("window", "lockout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds. Received: {value!r}")


@dataclass(frozen=True)
class Lockout:
    """A locked key and how long it stays locked (seconds)."""

    key: str
    seconds_left: float

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait (for an HTTP ``Retry-After``)."""
        return max(1, math.ceil(self.seconds_left))

    def reason(self, policy: LimitPolicy) -> Reason:
        """The ``locked_out`` reject reason, with the time left."""
        what = self.key.replace(":", " ", 1)
        return Reason(ReasonCode.LOCKED_OUT,
                      f"{what} is locked for another {self.retry_after} s after {policy.max_failures} failed "
                      f"attempts within {policy.window / 60:g} min; try again later")


class AttemptLimiter:
    """Failed-attempt counts and lockouts in the SQLite file ``path`` (created on first use).

    Args:
        path: database file (default: :func:`default_attempts_db`).
        policy: how many failures in which window lock a key, and for how long.
        clock: time source (Unix seconds).
        timeout: seconds to wait for another process holding the write lock.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, policy: LimitPolicy | None = None,
                 clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.path = Path(path) if path is not None else default_attempts_db()
        self.policy = policy or LimitPolicy()
        self.clock = clock
        self.timeout = timeout

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with transaction(self.path, _SCHEMA, "attempts database", timeout=self.timeout, wal=True) as conn:
            yield conn

    def check(self, keys: Iterable[str]) -> Lockout | None:
        """The lockout of the key locked longest among ``keys``; None when none is locked."""
        keys = [str(k) for k in keys]
        if not keys:
            return None
        now = float(self.clock())
        with self._connect() as conn:
            conn.execute("DELETE FROM lockouts WHERE until <= ?", (now,))
            rows = conn.execute(
                f"SELECT key, until FROM lockouts WHERE key IN ({','.join('?' * len(keys))}) ORDER BY until DESC",
                keys).fetchall()
        return Lockout(rows[0][0], rows[0][1] - now) if rows else None

    def record(self, keys: Iterable[str], *, success: bool) -> Lockout | None:
        """Record one attempt on ``keys``: a success clears their failures; a failure counts
        and locks each key that reaches the limit. Returns the lockout it started, if any."""
        keys = [str(k) for k in keys]
        now = float(self.clock())
        started = None
        p = self.policy
        with self._connect() as conn:
            conn.execute("DELETE FROM failed_attempts WHERE at <= ?", (now - p.window,))
            for key in keys:
                if success:
                    conn.execute("DELETE FROM failed_attempts WHERE key = ?", (key,))
                    continue
                conn.execute("INSERT INTO failed_attempts (key, at) VALUES (?, ?)", (key, now))
                (count,) = conn.execute("SELECT COUNT(*) FROM failed_attempts WHERE key = ?", (key,)).fetchone()
                if count >= p.max_failures:
                    conn.execute("INSERT OR REPLACE INTO lockouts (key, until) VALUES (?, ?)", (key, now + p.lockout))
                    conn.execute("DELETE FROM failed_attempts WHERE key = ?", (key,))
                    started = Lockout(key, p.lockout)
        return started

    def failures(self, key: str) -> int:
        """Failed attempts of ``key`` in the current window."""
        now = float(self.clock())
        with self._connect() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM failed_attempts WHERE key = ? AND at > ?",
                                    (str(key), now - self.policy.window)).fetchone()
        return int(count)
