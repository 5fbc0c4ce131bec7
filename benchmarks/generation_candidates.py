"""Candidate speed-ups of greedy generation, measured side by side on one prompt set.

    python benchmarks/generation_candidates.py [--prompts 384] [--batch 128]

The shipped base answers the first test questions of three families (greedy, 96 new tokens) with
`imm.engines.hf.generate` as the loop runs it, then with each candidate: forked CPU workers (what the
engine does now), a static KV cache, a static cache with a compiled decode step (torch.compile),
bfloat16 weights, and a larger batch. Each row: seconds (the compiled one after a warm-up call, whose
compile time is shown apart), tokens/s, and how many answers equal the baseline's.
"""

from __future__ import annotations

import argparse
import time

import torch
from _log import append_section

from imm.engines import hf
from imm.models import load_model
from imm.prompts import Prompter
from imm.tasks.registry import get_task


def prompt_set(n: int) -> tuple[list[str], tuple[str, ...]]:
    names = ("arith", "arith_long", "arith_muldiv")
    prompts, stop = [], ()
    for name in names:
        task = get_task(name)
        ask = Prompter(task)
        prompts += [ask(p) for p in task.problems("test")[:n // len(names)]]
        stop = tuple(ask.stop)
    return prompts, stop


def timed(model, tok, prompts, stop, *, batch, workers=1, extra=None) -> tuple[float, list[str], int]:
    original = hf.generation_settings
    if extra:
        hf.generation_settings = lambda *a, **k: original(*a, **k) | extra
    try:
        started = time.perf_counter()
        out = hf.generate(model, tok, prompts, max_new_tokens=96, batch_size=batch, stop=stop, workers=workers)
        seconds = time.perf_counter() - started
    finally:
        hf.generation_settings = original
    return seconds, [g[0].text for g in out], sum(g[0].num_tokens for g in out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=384)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    model, tok = load_model("builtin", device="cpu", dtype="float32")
    prompts, stop = prompt_set(args.prompts)
    timed(model, tok, prompts[:8], stop, batch=8)  # warm-up
    base_s, base, tokens = timed(model, tok, prompts, stop, batch=args.batch)
    rows = ["| generation | seconds | tokens/s | answers equal to the baseline's |", "|---|---|---|---|",
            f"| baseline: one process, {threads} torch threads, dynamic cache, batch {args.batch} | {base_s:.1f} | "
            f"{tokens / base_s:,.0f} | {len(base)}/{len(base)} |"]

    def row(label: str, seconds: float, texts: list[str]) -> None:
        same = sum(a == b for a, b in zip(texts, base))
        rows.append(f"| {label} | {seconds:.1f} | {tokens / seconds:,.0f} | {same}/{len(base)} |")

    seconds, texts, _ = timed(model, tok, prompts, stop, batch=args.batch, workers=threads)
    row(f"{threads} forked workers x 1 thread", seconds, texts)
    seconds, texts, _ = timed(model, tok, prompts, stop, batch=2 * args.batch)
    row(f"batch {2 * args.batch}", seconds, texts)
    seconds, texts, _ = timed(model, tok, prompts, stop, batch=args.batch, extra={"cache_implementation": "static"})
    row("static KV cache", seconds, texts)
    from transformers import CompileConfig

    compiled = {"cache_implementation": "static", "compile_config": CompileConfig(fullgraph=False, dynamic=False)}
    model.generation_config.compile_config = compiled["compile_config"]
    model.generation_config.compile_config._compile_all_devices = True  # transformers compiles only on GPUs unless told
    warm, _, _ = timed(model, tok, prompts[:args.batch], stop, batch=args.batch, extra=compiled)
    seconds, texts, _ = timed(model, tok, prompts, stop, batch=args.batch, extra=compiled)
    row(f"static KV cache + torch.compile (first call, compiling: {warm:.0f} s)", seconds, texts)
    model.generation_config.compile_config = None
    bf16, _ = load_model("builtin", device="cpu", dtype="bfloat16")
    seconds, texts, _ = timed(bf16, tok, prompts, stop, batch=args.batch)
    row("bfloat16 weights", seconds, texts)
    append_section("Greedy generation: candidate speed-ups", rows,
                   f"{len(prompts)} prompts (arith, arith_long, arith_muldiv test questions), model builtin, "
                   f"{tokens} generated tokens in the baseline.")


if __name__ == "__main__":
    main()
