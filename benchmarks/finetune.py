"""Fine-tuning throughput and padding: length-bucketed batches against plain shuffled batches.

    python benchmarks/finetune.py [--model builtin] [--examples 1024] [--batch 32]

Trains one epoch on gold `arith` solutions from the model; reports non-padding tokens/s and the share
of padded positions per batch. Target: padding < 15%.
"""

from __future__ import annotations

import argparse

from _log import write_section

from imm.models import load_model
from imm.finetune import FinetuneConfig, train
from imm.tasks.registry import get_task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    pairs = []
    for family in ("arith", "arith_long", "arith_symbolic"):  # mixed lengths, as a real D_t can be
        task = get_task(family)
        pairs += [(task.prompt(p), " " + p.solution) for p in task.problems("train")[:args.examples // 3]]
    rows = ["| batches | examples | tokens/s | padding share | seconds |", "|---|---|---|---|---|"]
    for name, chunks in (("shuffled (no bucketing)", 1), ("length-bucketed (50 batches a chunk)", 50)):
        model, tok = load_model(args.model, device="cpu", dtype="float32")
        cfg = FinetuneConfig(learning_rate=1e-5, epochs=1, batch_size=args.batch, bucket_chunks=chunks)
        s = train(model, tok, pairs, cfg, desc=None)
        rows.append(f"| {name} | {s.examples} | {s.tokens_per_s:,.0f} | {s.padding_share:.1%} | {s.seconds:.1f} |")
    write_section("Fine-tuning throughput and padding", rows, f"Model {args.model}, batch {args.batch}, one epoch.")


if __name__ == "__main__":
    main()
