"""One SQLite transaction helper for the stores of the auth layer (used nonces, attempt
counts, the server's challenges).

Each store is a small SQLite database that several processes (CLI runs, server workers)
share; every read-modify-write is one transaction opened with ``BEGIN IMMEDIATE`` (the
write lock is taken up front, so two processes never both read "unused" and both write),
with the schema created inside it. Errors become one-line
:class:`~facelivenet.errors.NonceStoreError`\\ s naming the file and the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from facelivenet.errors import NonceStoreError


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


@contextlib.contextmanager
def transaction(path: Path, schema: str, what: str, *, timeout: float, write: bool = True,
                wal: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection inside one transaction on the database ``path`` (created with its
    folder and ``schema`` when missing), committed when the block ends, rolled back on
    any exception.

    Args:
        what: the store's name in messages (``"nonce database"``).
        write: ``BEGIN IMMEDIATE`` (take the write lock now) rather than ``BEGIN``.
        wal: switch the database to write-ahead logging (readers never wait for a writer).
    """
    if path.is_dir():
        raise NonceStoreError(f"{path}: is a directory, not {_article(what)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise NonceStoreError(f"{path}: cannot open the {what} ({exc})") from None
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        for statement in filter(str.strip, schema.split(";")):
            conn.execute(statement)
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise NonceStoreError(f"{path}: {what} error ({exc})") from None
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
