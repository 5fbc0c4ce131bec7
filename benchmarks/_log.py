"""Appending a dated section to docs/benchmarks.md (shared by the loop's benchmark scripts)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

LOG = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()} CPU, torch threads {__import__('torch').get_num_threads()}"


def append_section(title: str, table: list[str], note: str = "") -> None:
    command = "python " + " ".join(sys.argv)
    text = f"\n## {title} ({date.today()}, {machine()})\n\nCommand: `{command}`\n\n" + "\n".join(table) + "\n"
    text += f"\n{note}\n" if note else ""
    print(text)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(LOG, "a") as f:
        f.write(text)


def stage_table(timings: Path, total: float, first: str = "stage", last: str = "total (wall)") -> list[str]:
    """Markdown rows: each stage's count and summed seconds from a run's timings.jsonl, then the wall time."""
    seconds, count = defaultdict(float), defaultdict(int)
    for line in timings.read_text().splitlines():
        record = json.loads(line)
        seconds[record["stage"]] += record["seconds"]
        count[record["stage"]] += 1
    rows = [f"| {first} | runs | seconds |", "|---|---|---|"]
    rows += [f"| {stage} | {count[stage]} | {seconds[stage]:.1f} |" for stage in seconds]
    return rows + [f"| **{last}** | | **{total:.1f}** |"]
