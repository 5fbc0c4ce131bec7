"""Fine-tuning throughput of 1 process against N processes through accelerate, side by side.

    python benchmarks/finetune_processes.py [--model builtin] [--examples 512] [--batch 32] [--processes 2]

Trains the same F_t stage (imm.finetune.finetune_checkpoint) on gold `arith` solutions with the same
global batch: in this process with every torch thread, in this process with one process's share of them
(threads/N), and as N processes (DDP; gloo on CPU) with threads/N each. Reports the training loop's non-padding tokens/s and the
stage's wall time, which adds the processes' start-up and model loading. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from _log import write_section

from imm.finetune import FinetuneConfig, finetune_checkpoint
from imm.tasks.registry import get_task
from imm.verify.training_set import Example


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    task = get_task("arith")
    examples = [Example(p.id, task.prompt(p), " " + p.solution) for p in task.problems("train")[:args.examples]]
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    rows = ["| processes | threads each | steps | final loss | tokens/s (training) | stage seconds (wall) |",
            "|---|---|---|---|---|---|"]
    cores = torch.get_num_threads()
    shared = max(1, cores // args.processes)  # what each of N processes gets
    with tempfile.TemporaryDirectory() as tmp:  # one process with every thread, then with N's share, then N
        for n, threads in ((1, cores), (1, shared), (args.processes, shared)):
            torch.set_num_threads(cores if n > 1 else threads)  # N processes: launch shares out the cores
            cfg = FinetuneConfig(learning_rate=1e-5, epochs=1, batch_size=args.batch, processes=n)
            out = Path(tmp) / f"p{n}t{threads}"
            out.mkdir()
            began = time.perf_counter()
            finetune_checkpoint(args.model, examples, cfg, out / "finetuned", out / "stats.json", seed=0, device="cpu")
            wall = time.perf_counter() - began
            s = json.loads((out / "stats.json").read_text())
            rows.append(f"| {n} | {threads} | {s['steps']} | {s['final_loss']:.4f} | {s['tokens_per_s']:,.0f} | {wall:.1f} |")
        torch.set_num_threads(cores)
    write_section("Fine-tuning: 1 process against several through accelerate", rows,
                   f"Model {args.model}, {len(examples)} gold arith solutions, global batch {args.batch}, one epoch, "
                   f"CPU (DDP over gloo). Same global batch, so the same steps and losses; tokens/s counts the "
                   f"training loop only, wall time adds start-up and loading. Load average {load:.1f} when it began.")


if __name__ == "__main__":
    main()
