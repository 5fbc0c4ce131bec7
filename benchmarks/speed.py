"""The default run before and after a change, one after the other on one machine: wall time per stage
and in total, and whether summary.csv is the same.

    python benchmarks/speed.py --before REV [--config default] [KEY=VALUE ...]

`--before` is a git revision of this repository; it is checked out into a temporary worktree and run
with the same Python environment (PYTHONPATH), then the working tree's code runs the same command.
summary.csv must be equal value for value, except the entropy figures, sums over the vocabulary whose
order torch's thread count may change: those must agree to a relative 1e-5.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _log import write_section

ROOT = Path(__file__).resolve().parents[1]
ENTROPY_TOLERANCE = 1e-5


def run(src: Path, out: Path, config: str, overrides: list[str]) -> float:
    env = os.environ | {"PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "imm", "run", "--config", config, f"out_dir={out}", "name=run", *overrides]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def stage_seconds(run_dir: Path) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for line in (run_dir / "timings.jsonl").read_text().splitlines():
        record = json.loads(line)
        seconds[record["stage"]] += record["seconds"]
    return seconds


def summary_differences(before: Path, after: Path) -> tuple[int, int, float]:
    """(rows compared, rows that differ beyond the rule, largest relative entropy difference)."""
    read = lambda p: {tuple(r[k] for k in ("arm", "iteration", "model", "task", "metric")): r["value"]
                      for r in csv.DictReader(open(p))}
    a, b = read(before / "summary.csv"), read(after / "summary.csv")
    worst, bad = 0.0, int(a.keys() != b.keys())
    for key in a.keys() & b.keys():
        x, y = float(a[key]), float(b[key])
        if key[-1] == "entropy":
            worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
            bad += not math.isclose(x, y, rel_tol=ENTROPY_TOLERANCE)
        else:
            bad += a[key] != b[key]
    return len(a), bad, worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--config", default="default")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "before"), args.before],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wall = {"before": run(tmp / "before" / "src", tmp / "b", args.config, args.overrides),
                    "after": run(ROOT / "src", tmp / "a", args.config, args.overrides)}
            stages = {"before": stage_seconds(tmp / "b" / "run"), "after": stage_seconds(tmp / "a" / "run")}
            compared, bad, worst = summary_differences(tmp / "b" / "run", tmp / "a" / "run")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "before")], check=False)
    rows = [f"| stage | before ({args.before}) s | after s | after / before |", "|---|---|---|---|"]
    for stage in stages["before"]:
        b, a = stages["before"][stage], stages["after"].get(stage, 0.0)
        rows.append(f"| {stage} | {b:.1f} | {a:.1f} | {a / b:.2f} |" if b else f"| {stage} | {b:.1f} | {a:.1f} | |")
    rows.append(f"| **whole run (wall)** | **{wall['before']:.1f}** | **{wall['after']:.1f}** | "
                f"**{wall['after'] / wall['before']:.2f}** |")
    note = (f"summary.csv: {compared} values compared, {bad} differ beyond the rule (entropy figures within a "
            f"relative {ENTROPY_TOLERANCE:g}, all others equal); largest relative entropy difference {worst:.1e}.")
    write_section(f"imm run --config {args.config}, before and after {' '.join(args.overrides)}".strip(), rows, note)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
