"""Whole `imm run` wall time, per stage and in total (target for `default`: <= 10 minutes on 2 cores).

    python benchmarks/run.py [--config default] [KEY=VALUE ...]

Runs the loop from scratch in a temporary folder and sums the stage times it logs (timings.jsonl).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _log import append_section, stage_table

from imm.cli import main as imm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="default")
    parser.add_argument("--out", help="keep the run under this folder (default: a temporary one)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        started = time.perf_counter()
        assert imm(["run", "--config", args.config, f"out_dir={out}", *args.overrides, "--restart"]) == 0
        total = time.perf_counter() - started
        name = [o.split("=", 1)[1] for o in ["name=" + args.config, *args.overrides] if o.startswith("name=")][-1]
        rows = stage_table(Path(out) / name / "timings.jsonl", total)
    append_section(f"imm run --config {args.config} {' '.join(args.overrides)}".strip(), rows)


if __name__ == "__main__":
    main()
