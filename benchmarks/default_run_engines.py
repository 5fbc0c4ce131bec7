"""The whole default run with each generation engine, one after the other on one machine.

    python benchmarks/default_run_engines.py [--config default] [KEY=VALUE ...]

`imm run` with `sampling.backend=hf`, then with `sampling.backend=vllm` (vLLM's CPU build in .venv-vllm,
made by scripts/setup-vllm-venv): wall time per stage and in total, the engine opens the vllm run paid
(every sampling and evaluation stage starts its own child), and how far the two runs' summaries agree:
the engines' greedy answers agree on the built-in model but their random draws differ, so from the first
sampled S_1 on the runs are two different (equally valid) self-improvement runs; θ0's evaluation is the
like-for-like row.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from _log import append_section
from speed import ROOT, run, stage_seconds


def theta0(run_dir: Path) -> dict[str, str]:
    """θ0's strict-match accuracy per task (the iteration-0 rows of summary.csv)."""
    rows = csv.DictReader(open(run_dir / "summary.csv"))
    return {r["task"]: r["value"] for r in rows if r["iteration"] == "0" and r["metric"] == "strict-match"
            and r["model"] == "generator"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="default")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    backends = ("hf", "vllm")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall = {b: run(ROOT / "src", tmp / b, args.config, [*args.overrides, f"sampling.backend={b}"]) for b in backends}
        stages = {b: stage_seconds(tmp / b / "run") for b in backends}
        accuracy = {b: theta0(tmp / b / "run") for b in backends}
    rows = ["| stage | hf s | vllm s | vllm / hf |", "|---|---|---|---|"]
    for stage in stages["hf"]:
        h, v = stages["hf"][stage], stages["vllm"].get(stage, 0.0)
        rows.append(f"| {stage} | {h:.1f} | {v:.1f} | {v / h:.2f} |" if h else f"| {stage} | {h:.1f} | {v:.1f} | |")
    rows.append(f"| **whole run (wall)** | **{wall['hf']:.1f}** | **{wall['vllm']:.1f}** | "
                f"**{wall['vllm'] / wall['hf']:.2f}** |")
    same = sum(accuracy["hf"][t] == accuracy["vllm"].get(t) for t in accuracy["hf"])
    note = (f"θ0's greedy accuracy: {same} of {len(accuracy['hf'])} tasks equal between the engines "
            f"(hf {accuracy['hf']}; vllm {accuracy['vllm']}).")
    append_section(f"imm run --config {args.config} with each generation engine", rows, note)
    if not accuracy["hf"]:
        sys.exit("no iteration-0 accuracy rows in summary.csv")


if __name__ == "__main__":
    main()
