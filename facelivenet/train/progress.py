"""How a training run reports its progress and how a user stops it.

The loop never prints or draws: it calls a :class:`Reporter` (the library default,
:class:`StderrReporter`, prints a line every few steps; the CLI passes a Click progress
bar) and an optional ``on_step`` callback (tests, monitoring). A first Ctrl-C becomes a
:class:`StopRequest` flag the loop checks between steps, so it can checkpoint at that
exact step.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Mapping, Protocol

#: Called after each step with (global step, that step's logs).
OnStep = Callable[[int, Mapping[str, float]], None]


class Reporter(Protocol):
    """Where a training run reports its progress (the CLI draws a progress bar)."""

    def epoch_start(self, label: str, length: int, start: int) -> None:
        """An epoch of ``length`` steps begins (``start`` already done when resuming)."""

    def step(self, text: str) -> None:
        """One step is done; ``text`` holds the latest loss and metrics."""

    def epoch_end(self) -> None:
        """The epoch's steps are done."""

    def message(self, text: str) -> None:
        """A line for the user (epoch summaries, where a checkpoint went)."""


class StderrReporter:
    """The library's default: a line per epoch and per ``every`` steps on stderr (none when quiet)."""

    def __init__(self, quiet: bool = False, every: int = 50):
        self.quiet, self.every = quiet, every
        self._label, self._length, self._done = "", 0, 0

    def epoch_start(self, label: str, length: int, start: int) -> None:
        self._label, self._length, self._done = label, length, start

    def step(self, text: str) -> None:
        self._done += 1
        if not self.quiet and (self._done % self.every == 0 or self._done == self._length):
            print(f"{self._label}: step {self._done}/{self._length} {text}", file=sys.stderr, flush=True)

    def epoch_end(self) -> None:
        pass

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def step_text(logs: Mapping[str, float]) -> str:
    """The latest loss and metrics of a step, as :meth:`Reporter.step` shows them."""
    keys = [k for k in ("loss", "acc_id", "acc_expr", "w1", "w2") if k in logs]
    return " ".join(f"{k} {logs[k]:.4g}" for k in keys)


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a flag checked between steps; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
