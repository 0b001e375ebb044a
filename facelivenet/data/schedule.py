"""Learning-rate schedule files in the original ``epoch: lr`` format.

One entry per line, ``#`` starts a comment, blank lines are ignored::

    # epoch: learning rate
    0: 0.01
    2: 0.001
    5: 0.0001
    8: -1        # a negative rate ends training before this epoch

The rate of an epoch is that of the last entry whose epoch is at or below it. Epochs
count from 0, must start at 0 and increase strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from facelivenet.errors import FileFormatError
from facelivenet.utils import parse_number, read_text_file


@dataclass(frozen=True)
class LRSchedule:
    """Piecewise-constant learning rate by epoch.

    Attributes:
        entries: ((epoch, lr), ...) in increasing epoch order; a negative ``lr`` (only
            the last entry) marks the epoch at which training stops.
    """

    entries: tuple[tuple[int, float], ...]

    @property
    def stop_epoch(self) -> int | None:
        """The epoch at which a negative rate ends training, if any."""
        epoch, lr = self.entries[-1]
        return epoch if lr < 0 else None

    def lr_at(self, epoch: int) -> float | None:
        """Learning rate for ``epoch`` (0-based); None once training should stop."""
        current = self.entries[0][1]
        for start, lr in self.entries:
            if start > epoch:
                break
            current = lr
        return None if current < 0 else current

    @classmethod
    def constant(cls, lr: float) -> "LRSchedule":
        return cls(((0, float(lr)),))


def parse_lr_schedule(text: str, source: str = "<schedule>") -> LRSchedule:
    """Parse schedule text; errors name ``source`` and the line number."""
    entries: list[tuple[int, float]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        if line.count(":") != 1:
            raise FileFormatError(f"{where}: expected 'epoch: learning_rate', got {raw.strip()!r}")
        epoch_text, lr_text = (part.strip() for part in line.split(":"))
        epoch = parse_number(epoch_text, int, "epoch", where, FileFormatError)
        lr = parse_number(lr_text, float, "learning rate", where, FileFormatError)
        if epoch < 0:
            raise FileFormatError(f"{where}: epoch must be >= 0, got {epoch}")
        if lr != lr or lr in (float("inf"), float("-inf")) or lr == 0:
            raise FileFormatError(f"{where}: learning rate must be a finite non-zero number, got {lr_text!r}")
        if entries and epoch <= entries[-1][0]:
            raise FileFormatError(f"{where}: epochs must increase; {epoch} follows {entries[-1][0]}")
        if entries and entries[-1][1] < 0:
            raise FileFormatError(f"{where}: no entry may follow the negative (stop) rate")
        if not entries and epoch != 0:
            raise FileFormatError(f"{where}: the first entry must be for epoch 0, got {epoch}")
        entries.append((epoch, lr))
    if not entries:
        raise FileFormatError(f"{source}: no 'epoch: learning_rate' entries")
    if entries[0][1] < 0:
        raise FileFormatError(f"{source}: the rate for epoch 0 must be positive")
    return LRSchedule(tuple(entries))


def read_lr_schedule(path: str | os.PathLike) -> LRSchedule:
    """Read and parse a schedule file."""
    return parse_lr_schedule(read_text_file(path, "schedule file", FileFormatError), str(path))
