"""Small shared helpers: input-file checks and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from facelivenet.errors import InputError


def parse_number(text: str, kind: type, what: str, where: str, error: type[InputError] = InputError):
    """``int(text)`` or ``float(text)`` of a field of a user's file.

    Raises:
        ``error``: "WHERE: WHAT must be a whole number (a number), got 'TEXT'".
    """
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise error(f"{where}: {what} must be {noun}, got {text!r}") from None


def check_input_file(path: str | os.PathLike, kind: str, error: type[InputError] = InputError) -> Path:
    """``path`` as a Path if it is an existing, readable, non-empty file; else ``error``
    with a one-line message naming it (``kind`` is what it should be: "image", "video")."""
    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no such file")
    if p.is_dir():
        raise error(f"{p}: is a directory, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if not os.access(p, os.R_OK):
        raise error(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise error(f"{p}: empty file")
    return p


def read_text_file(path: str | os.PathLike, what: str, error: type[InputError] = InputError) -> str:
    """The text of ``path``; ``error`` naming it (and ``what`` it should be, e.g.
    "pairs file") when it is missing or unreadable."""
    p = Path(path)
    try:
        return p.read_text()
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{p}: unreadable {what} ({exc})") from None


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it over ``path`` on success.

    The file gets the permissions of any file the user creates (0666 less the umask,
    e.g. 0644), or 0600 when ``private`` (galleries: biometric templates). On any
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o600 if private else 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, *, private: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (0600 when ``private``, else as the umask says)."""
    with atomic_path(path, private=private) as tmp:
        tmp.write_text(text)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def check_output_path(path: str | os.PathLike, inputs: Sequence[str | os.PathLike | None] = (),
                      what: str = "output") -> Path:
    """``path`` as a Path if a file can be written there: its folder exists (or can be
    made) and is writable, it is not a directory, and it is none of ``inputs`` (by
    inode, so a link or another spelling of an input is caught). Checked before any
    long work, so a bad output path never costs an analysis or a spent token.

    Raises:
        InputError: naming the path and the problem.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; the {what} must be a file")
    for src in inputs:
        if src is None:
            continue
        try:
            if p.exists() and os.path.samefile(p, src):
                raise InputError(f"{p}: is an input ({src}); the {what} would overwrite it")
        except OSError:
            pass
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{parent}: cannot create the folder for the {what} ({exc.strerror or exc})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{parent}: not writable; cannot write the {what} {p.name} there")
    return p
