"""Importing Keras (and TensorFlow) quietly, once: for the CLI and worker processes."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def stderr_fd_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (C++ logs bypass sys.stderr)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. Click's CliRunner
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def load_backend() -> None:
    """Import Keras (and its backend) once, without TensorFlow's C++ start-up log lines.

    Those lines are written before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so the only
    way to keep stderr for our own progress and errors is to mute the descriptor
    during the import. Python-level errors of the import still propagate.
    """
    if "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_fd_silenced():
        import keras  # noqa: F401
