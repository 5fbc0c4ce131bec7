"""Progress of a stage: a tqdm bar on a terminal, plain periodic lines anywhere else.

A log redirected to a file, or a stage run side by side with others (imm.side_by_side: two bars would
draw over each other), gets one plain line per stage at most every `PLAIN_EVERY` seconds, and one when
it ends, instead of hundreds of `\\r` redraws:

    fine-tune imm t=2: 120/400 step (30%, 41s, loss=0.412)
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

PLAIN_EVERY = 30.0  # seconds between two plain lines of one stage: a 4-minute stage logs about 8
_PLAIN = False  # set in a process that runs beside others (imm.side_by_side)


def plain_lines() -> None:
    """From now on this process reports progress in plain lines, never a bar."""
    global _PLAIN
    _PLAIN = True


def progress(total: int, desc: str | None, unit: str, *, disable: bool = False):
    """A bar (terminal) or a `PlainProgress` (log file, side by side), both with update, set_postfix, close."""
    if disable or desc is None:
        return tqdm(total=total, disable=True)
    if _PLAIN or not sys.stderr.isatty():
        return PlainProgress(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class PlainProgress:
    """tqdm's interface as lines on stderr: the first update, then at most one per PLAIN_EVERY s, and the end."""

    def __init__(self, total: int, desc: str, unit: str, every: float = PLAIN_EVERY, clock=time.monotonic):
        self.total, self.desc, self.unit, self.every, self.clock = total, desc, unit, every, clock
        self.n, self.postfix, self.started, self.shown, self._last_n = 0, "", clock(), None, 0

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.shown is None or self.clock() - self.shown >= self.every:
            self._line()

    def close(self) -> None:
        if self.shown is None or self.n != self._last_n:
            self._line()

    def _line(self) -> None:
        self.shown, self._last_n = self.clock(), self.n
        share = f"{100 * self.n / self.total:.0f}%, " if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({share}{self.shown - self.started:.0f}s{extra})",
              file=sys.stderr, flush=True)
