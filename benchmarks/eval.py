"""`imm eval` throughput on the built-in model: questions/s and generated tokens/s, greedy and with K
samples, and the share of the time spent judging answers (vs generating them).

    .venv/bin/python benchmarks/eval.py                        # --limit 100 --max-new-tokens 96
    .venv/bin/python benchmarks/eval.py --append-docs          # and writes its section of docs/benchmarks.md

Uses `--model builtin` when the shipped base model exists; otherwise an untrained Llama of the same
shape (imm.world.build.BuildConfig) with the world tokenizer, saved to a temporary folder — an
untrained model never stops early, so its figures are per full-length completion.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from imm import cli
from imm.models import BUILTIN_DIR
from imm.evaluation import score_completions
from imm.tasks.registry import get_task

from _log import write_section

ROOT = Path(__file__).resolve().parents[1]


def model_folder(tmp: Path) -> tuple[str, str]:
    if (BUILTIN_DIR / "config.json").exists():
        return "builtin", "built-in base model"
    from imm.world.build import BuildConfig, new_model, pretrain_pairs
    from imm.world.tokenizer import train_tokenizer

    cfg = BuildConfig(steps=20)
    tokenizer = train_tokenizer((p + r for p, r in pretrain_pairs(cfg)), cfg.vocab_size)
    model = new_model(cfg, tokenizer)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    return str(tmp / "model"), "untrained Llama of the built-in shape (built-in model not present)"


def run_eval(model: str, out: Path, task: str, limit: int, tokens: int, samples: int) -> dict:
    args = ["eval", "--model", model, "--task", task, "--limit", str(limit), "--max-new-tokens", str(tokens),
            "--device", "cpu", "--out", str(out)]
    if samples:
        args += ["--samples", str(samples), "--temperature", "1.0"]
    start = time.perf_counter()
    assert cli.main(args) == 0
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / f"samples_{task}.jsonl").read_text().splitlines()]
    return {"seconds": seconds, "rows": rows, "results": json.loads((out / "results.json").read_text())}


def judge_seconds(task_name: str, rows: list[dict], limit: int) -> float:
    """Time to re-judge the same completions (both metrics, all figures) without generating."""
    from imm.engines import Completion

    task = get_task(task_name)
    problems = task.problems("test")[:limit]
    greedy = [Completion(r["completion"], r["num_tokens"], r["mean_entropy"]) for r in rows[:limit]]
    rest = [Completion(r["completion"], r["num_tokens"], r["mean_entropy"]) for r in rows[limit:]]
    k = len(rest) // limit
    sampled = [rest[i * k:(i + 1) * k] for i in range(limit)] if k else None
    start = time.perf_counter()
    score_completions(task, problems, [""] * limit, greedy, sampled)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="arith")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    lines = ["| run | questions | completions | gen. tokens | seconds | questions/s | tokens/s | judging s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        model, what = model_folder(Path(tmp))
        for k in (0, args.samples):
            r = run_eval(model, Path(tmp) / f"out{k}", args.task, args.limit, args.max_new_tokens, k)
            tokens = sum(row["num_tokens"] for row in r["rows"])
            judge = judge_seconds(args.task, r["rows"], args.limit)
            label = "greedy" if k == 0 else f"greedy + {k} samples"
            lines.append(f"| {label} | {args.limit} | {len(r['rows'])} | {tokens} | {r['seconds']:.1f} | "
                         f"{args.limit / r['seconds']:.2f} | {tokens / r['seconds']:.0f} | {judge:.3f} |")
            print(json.dumps(r["results"]["results"]), file=sys.stderr)
    text = (f"Model: {what}; task `{args.task}`, `--limit {args.limit} --max-new-tokens {args.max_new_tokens}`, "
            f"CPU, torch threads {torch.get_num_threads()}. Seconds include loading the model.\n\n" + "\n".join(lines))
    print(text)
    if args.append_docs:
        write_section("imm eval throughput", [text], command=".venv/bin/python benchmarks/eval.py --append-docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
