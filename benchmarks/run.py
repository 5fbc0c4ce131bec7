"""Whole `imm run` wall time, per stage and in total (target for `default`: <= 10 minutes on 2 cores).

    python benchmarks/run.py [--config default] [KEY=VALUE ...]

Runs the loop from scratch in a temporary folder and sums the stage times it logs (timings.jsonl).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _log import append_section

from imm.cli import main as imm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="default")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        assert imm(["run", "--config", args.config, f"out_dir={out}", *args.overrides]) == 0
        total = time.perf_counter() - started
        timings = [json.loads(line) for line in next(Path(out).iterdir()).joinpath("timings.jsonl").open()]
    per_stage, count = defaultdict(float), defaultdict(int)
    for t in timings:
        per_stage[t["stage"]] += t["seconds"]
        count[t["stage"]] += 1
    rows = ["| stage | runs | seconds |", "|---|---|---|"]
    rows += [f"| {s} | {count[s]} | {per_stage[s]:.1f} |" for s in per_stage]
    rows.append(f"| **total (wall)** | | **{total:.1f}** |")
    append_section(f"imm run --config {args.config} {' '.join(args.overrides)}".strip(), rows)


if __name__ == "__main__":
    main()
