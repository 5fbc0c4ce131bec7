"""Sampling throughput: the batched sampler against one-question-at-a-time `generate`.

    python benchmarks/sampling.py [--model builtin] [--questions 64] [--batch 64]

Same model, same prompts, greedy; counts generated tokens per second. Target: >= 5x at batch 64.
"""

from __future__ import annotations

import argparse
import time

from _log import write_section

from imm.models import load_model
from imm.engines.hf import generate
from imm.tasks.registry import get_task


def timed(model, tok, prompts, batch, stop) -> tuple[float, int]:
    started = time.perf_counter()
    out = generate(model, tok, prompts, max_new_tokens=96, batch_size=batch, stop=stop)
    return time.perf_counter() - started, sum(c[0].num_tokens for c in out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    model, tok = load_model(args.model, device="cpu", dtype="float32")
    task = get_task("arith")
    prompts = [task.prompt(p) for p in task.problems("test")[:args.questions]]
    timed(model, tok, prompts[:4], 4, task.stop)  # warm-up
    rows = ["| sampler | seconds | generated tokens | tokens/s |", "|---|---|---|---|"]
    speed = {}
    for name, batch in (("one at a time", 1), (f"batched ({args.batch})", args.batch)):
        seconds, tokens = timed(model, tok, prompts, batch, task.stop)
        speed[batch] = tokens / seconds
        rows.append(f"| {name} | {seconds:.2f} | {tokens} | {tokens / seconds:,.0f} |")
    note = f"Speed-up of batching: {speed[args.batch] / speed[1]:.1f}x ({args.questions} `arith` test prompts, greedy, model {args.model})."
    write_section("Sampling throughput", rows, note)


if __name__ == "__main__":
    main()
