"""Appending a dated section to docs/benchmarks.md (shared by the loop's benchmark scripts)."""

from __future__ import annotations

import os
import platform
import sys
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
