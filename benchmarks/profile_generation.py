"""Where generation time goes: one evaluation of the shipped base under cProfile, in one process.

    python benchmarks/profile_generation.py [--limit 300] [--threads 2]

Runs the default run's evaluation of θ0 (six tasks, greedy, and K samples of the diversity questions)
with one generation process, and splits its time: the model's forward pass (and within it the KV
cache's updates and attention), choosing tokens (logits processing, sampling), stop
strings, tokenising prompts, decoding answers, the entropy figures, checking answers, and the rest
(Python, decoding-loop and `generate` overhead). It also counts the positions computed for rows that had already
finished (a batch runs until its longest answer ends) and for left padding.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import tempfile
import time
from pathlib import Path

import torch
from _log import append_section

from imm.config import load_config
from imm.evaluation.suite import evaluate_on_run_tasks
from imm.models import BUILTIN_DIR

# part -> the (file suffix, function name) pairs whose cumulative time it is
PARTS = {
    "model forward": [("models/llama/modeling_llama.py", "forward")],
    "  of which KV cache updates": [("transformers/cache_utils.py", "update"), ("imm/engines/decode.py", "update")],
    "  of which attention (SDPA)": [("integrations/sdpa_attention.py", "sdpa_attention_forward")],
    "choosing tokens (logits processors, sampling)": [("generation/logits_process.py", "__call__"),
                                                      ("~", "<built-in method torch.multinomial>"),
                                                      ("~", "<built-in method torch.argmax>")],
    "stop strings": [("generation/stopping_criteria.py", "__call__")],
    "tokenising prompts": [("tokenization_utils_base.py", "__call__")],
    "decoding answers": [("tokenization_utils_base.py", "decode")],
    "entropy figures": [("imm/engines/decode.py", "step_entropy")],
    "checking answers": [("imm/tasks/base.py", "check_many")],
}


def cumulative(stats: pstats.Stats, targets) -> float:
    """Per target, the cumulative seconds of its outermost function (the largest: the others run inside
    it, e.g. the causal LM's forward around its blocks' forwards); summed over the targets."""
    return sum(max((cum for (file, _, name), (_, _, _, cum, _) in stats.stats.items()
                    if file.endswith(suffix) and name == function), default=0.0)
               for suffix, function in targets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config("default")
    e = dataclasses.replace(cfg.eval, limit=args.limit)
    m = dataclasses.replace(cfg.model, workers=1)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        started = time.perf_counter()
        profile.enable()
        evaluate_on_run_tasks(BUILTIN_DIR, cfg.data, cfg.prompt, e, m, cfg.sampling, 0, out)
        profile.disable()
        wall = time.perf_counter() - started
        rows = [__import__("json").loads(line) for line in (Path(tmp) / "eval.samples.jsonl").read_text().splitlines()]
    stats = pstats.Stats(profile)
    table = ["| part | seconds | share |", "|---|---|---|"]
    counted = 0.0
    for part, targets in PARTS.items():
        seconds = cumulative(stats, targets)
        counted += 0 if part.startswith("  ") else seconds
        table.append(f"| {part} | {seconds:.1f} | {seconds / wall:.0%} |")
    table.append(f"| rest (Python, decoding-loop and `generate` overhead, loading) | {wall - counted:.1f} | {(wall - counted) / wall:.0%} |")
    table.append(f"| **one evaluation (wall)** | **{wall:.1f}** | |")
    tokens = [r["num_tokens"] for r in rows]
    note = (f"{len(rows)} greedy answers, {sum(tokens) / len(tokens):.1f} tokens on average, longest {max(tokens)}; "
            f"torch threads {args.threads}, one generation process, eval.limit {args.limit}.")
    append_section("Profile of one evaluation (θ0, default eval settings)", table, note)


if __name__ == "__main__":
    main()
