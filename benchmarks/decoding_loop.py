"""The hf engine's decoding loop against Hugging Face `generate`, side by side on one prompt set.

    python benchmarks/decoding_loop.py [--prompts 384] [--batch 128] [--threads 1]

The shipped base answers the first test questions of three families (96 new tokens), greedy and K = 4 at
T = 0.8, through `imm.engines.hf.generate` with each way of decoding: `model.generate`, and imm's loop
(imm/engines/decode.py: generate's steps, rows that ended leaving the batch, the KV cache written in
place). Each row: seconds (the better of two tries), tokens/s, and how many records (text, token count,
entropy figure) equal generate's. One process with `--threads` torch threads (1: what each CPU
generation worker runs).
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from _log import write_section

from imm.engines import hf
from imm.models import load_model
from imm.prompts import Prompter
from imm.tasks.registry import get_task


def prompt_set(n: int) -> tuple[list[str], tuple[str, ...]]:
    """The first test questions of three families whose answers vary in length, as the run prompts them."""
    names = ("arith", "arith_long", "arith_muldiv")
    prompts, stop = [], ()
    for name in names:
        task = get_task(name)
        ask = Prompter(task)
        prompts += [ask(p) for p in task.problems("test")[:n // len(names)]]
        stop = tuple(ask.stop)
    return prompts, stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=384)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model("builtin", device="cpu", dtype="float32")
    prompts, stop = prompt_set(args.prompts)
    batch = hf._generate_batch

    def timed(own_loop: bool, **options) -> tuple[float, list]:
        hf._generate_batch = functools.partial(batch, own_loop=own_loop)
        best, out = float("inf"), None
        for _ in range(2):
            started = time.perf_counter()
            out = hf.generate(model, tok, prompts, max_new_tokens=96, batch_size=args.batch, stop=stop, **options)
            best = min(best, time.perf_counter() - started)
        hf._generate_batch = batch
        return best, [c for group in out for c in group]

    timed(True, k=1)  # warm-up
    rows = ["| run | decoding | seconds | tokens/s | records equal to generate's | loop / generate |",
            "|---|---|---|---|---|---|"]
    for label, options in (("greedy", dict(k=1)), ("K=4, T=0.8", dict(k=4, temperature=0.8, seed=3))):
        theirs_s, theirs = timed(False, **options)
        ours_s, ours = timed(True, **options)
        tokens = sum(c.num_tokens for c in theirs)
        same = sum(a == b for a, b in zip(ours, theirs))
        rows += [f"| {label} | `model.generate` | {theirs_s:.2f} | {tokens / theirs_s:,.0f} | | |",
                 f"| {label} | imm's loop | {ours_s:.2f} | {tokens / ours_s:,.0f} | {same}/{len(theirs)} | "
                 f"{ours_s / theirs_s:.2f} |"]
    write_section("Decoding loop against generate", rows,
                   f"{len(prompts)} prompts (arith, arith_long, arith_muldiv test questions), model builtin, batch "
                   f"{args.batch} sequences, {args.threads} torch thread(s).")


if __name__ == "__main__":
    main()
