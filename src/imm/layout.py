"""Run-folder layout: a stage is done exactly when its output exists (written atomically, imm.outputs).

    runs/<name>/
      config.yaml                       resolved config, written before any work
      summary.csv                       arm,iteration,model,task,domain,metric,value,n
      timings.jsonl                     wall time of every stage that ran (a log)
      iter_0/eval/generator.json        θ0's evaluation, shared by every arm
      analysis_cache/                   layer importance of θ0, computed once
      arms/<arm>/iter_<t>/
        samples.jsonl                   every sampled completion, with its verdict
        dataset.jsonl                   the verified, filtered training set D_t (+ dataset_stats.json)
        finetuned/                      F_t  (Hugging Face checkpoint; + finetune_stats.json beside it)
        merged/                         θ_t  (IMM arms only)
        eval/<model>.json               accuracy and diversity of one model (+ <model>.samples.jsonl)
        analysis/                       layer tables (imm analyze)
"""

from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# Every top-level entry a run folder may hold; `imm run --restart` removes a folder holding only these.
RUN_ENTRIES = ("config.yaml", "summary.csv", "timings.jsonl", "iter_0", "arms", "analysis_cache")


def foreign_entries(run_dir: Path) -> list[str]:
    """Top-level names in `run_dir` that no run writes (temporaries of a killed run excluded)."""
    from imm.outputs import is_temporary

    return sorted(p.name for p in Path(run_dir).iterdir() if p.name not in RUN_ENTRIES and not is_temporary(p))


def iter_dir(run_dir: Path, arm: str, iteration: int) -> Path:
    return Path(run_dir) / "arms" / arm / f"iter_{iteration}"
