"""Writing a benchmark's section of docs/benchmarks.md (shared by the benchmark scripts).

The doc holds one section per benchmark, headed `## <title>`: the current figure, with its date, machine and
command. A re-run replaces its own section (or adds it, before the closing "Findings" part); earlier figures
live in git history.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

LOG = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
FINDINGS = "## Findings"


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()} CPU, torch threads {__import__('torch').get_num_threads()}"


def section(title: str, table: list[str], note: str = "", *, command: str | None = None,
            setting: str | None = None) -> str:
    """The section's text: heading, date, machine, command, table and note."""
    command = command or "python " + " ".join(sys.argv)
    text = f"## {title}\n\n{date.today()}, {setting or machine()}. Command: `{command}`\n\n" + "\n".join(table) + "\n"
    return text + (f"\n{note}\n" if note else "")


def replace_section(doc: str, title: str, text: str) -> str:
    """`doc` with the section headed `## title` replaced by `text` (which starts with that heading), or with
    `text` added before the Findings part (at the end if there is none) when no such section exists yet."""
    lines = doc.splitlines(keepends=True)
    heading = f"## {title}"
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == heading]
    if starts:
        start = starts[0]
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        start = end = next((i for i, line in enumerate(lines) if line.rstrip("\n") == FINDINGS), len(lines))
    before, after = "".join(lines[:start]), "".join(lines[end:])
    if before and not before.endswith("\n\n"):
        before += "\n" if before.endswith("\n") else "\n\n"
    return before + text.rstrip("\n") + "\n" + ("\n" + after if after else "")


def write_section(title: str, table: list[str], note: str = "", **how) -> None:
    """Print the section and put it in docs/benchmarks.md in place of the benchmark's previous one."""
    text = section(title, table, note, **how)
    print(text)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    doc = LOG.read_text(encoding="utf-8") if LOG.exists() else "# Benchmarks\n"
    tmp = LOG.with_suffix(".md.tmp")
    tmp.write_text(replace_section(doc, title, text), encoding="utf-8")
    tmp.replace(LOG)  # whole or not at all


append_section = write_section  # the earlier name: a script still calling it replaces its section too


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
