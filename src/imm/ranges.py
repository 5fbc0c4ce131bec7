"""The range of a number setting, declared beside its field in the config schema (imm.config, imm.prompts).

Parsing (`imm.config.from_dict`) refuses a value outside it, naming the dotted key and the range; every
float must also be finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Range:
    """The values a number setting may take, declared beside its field; parsing refuses any other (and
    NaN or infinity for every float), naming the dotted key and this range."""

    low: float
    high: float
    low_open: bool = False  # (low, ...: low itself excluded
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        return above and (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def setting(default: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
            run: bool = False) -> Any:
    """A number field and its range (for a tuple, every item's); `run`: a run option (`run_option`)."""
    meta = {"range": Range(low, high, low_open, high_open), **({"run_option": True} if run else {})}
    return field(default=default, metadata=meta)
