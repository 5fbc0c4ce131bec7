"""Two fine-tunes one after the other on all threads, against the same two at once on a share each.

    python benchmarks/finetune_side_by_side.py [--run RUN_DIR] [--examples 1000] [--epochs 3] [--batch 32]

What `imm run` does with an iteration's independent F_t on a CPU (imm.side_by_side), with the default
run's fine-tune settings (lr 3e-4, 3 epochs of batch 32): with `--run`, the two t = 2 fine-tunes of a
finished default run (self_improve: F_1 on its D_2; imm: θ_1 on its D_2, the loop's stage seed); without,
the shipped base on 1000 gold `arith` solutions, twice with two seeds. Each row: wall seconds for both,
and whether each F_t equals, bit for bit, the one trained alone on all threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _log import write_section
from safetensors.torch import load_file

from imm.finetune import FinetuneConfig, finetune_checkpoint
from imm.models import BUILTIN_DIR
from imm.side_by_side import side_by_side
from imm.tasks.registry import get_task
from imm.verify.training_set import Example

SEEDS = (1, 2)


def jobs(args) -> tuple[list[tuple[Path, list, int]], str]:
    """(init, examples, seed) of the two fine-tunes, and what they are."""
    if args.run:
        from imm.loop import stage_seed
        from imm.verify.training_set import read_training_set

        arms = Path(args.run) / "arms"
        seed = stage_seed(0, 2, "finetune")
        return ([(arms / "self_improve/iter_1/finetuned", read_training_set(arms / "self_improve/iter_2/dataset.jsonl"), seed),
                 (arms / "imm/iter_1/merged", read_training_set(arms / "imm/iter_2/dataset.jsonl"), seed)],
                f"the t = 2 fine-tunes of the default run in {args.run} (self_improve and imm, their D_2)")
    task = get_task("arith")
    examples = [Example(str(i), task.prompt(p), " " + p.solution)
                for i, p in enumerate(task.problems("train")[:args.examples])]
    return [(BUILTIN_DIR, examples, seed) for seed in SEEDS], f"shipped base, {len(examples)} gold arith solutions, seeds {SEEDS}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="", help="a finished default run's folder: train its t = 2 fine-tunes")
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    works, what = jobs(args)
    cfg = FinetuneConfig(learning_rate=3e-4, epochs=args.epochs, batch_size=args.batch)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def fine_tune(way: str, i: int) -> None:
            init, examples, seed = works[i]
            out = root / way / str(i)
            finetune_checkpoint(init, examples, cfg, out, out.with_suffix(".json"), seed=seed, device="cpu")

        warm = root / "warm-up"  # the first training in a process pays for loading and first-call set-up
        finetune_checkpoint(works[0][0], works[0][1][:64], cfg, warm, warm.with_suffix(".json"), seed=0, device="cpu")
        started = time.perf_counter()
        for i in range(len(works)):
            fine_tune("after", i)
        after = time.perf_counter() - started
        started = time.perf_counter()
        side_by_side([lambda i=i: fine_tune("at_once", i) for i in range(len(works))])
        at_once = time.perf_counter() - started
        equal = sum(all(torch.equal(a[k], b[k]) for k in a)
                    for a, b in ((load_file(root / "after" / str(i) / "model.safetensors"),
                                  load_file(root / "at_once" / str(i) / "model.safetensors")) for i in range(len(works))))
    rows = ["| two fine-tunes | seconds | vs one after the other | F_t equal to the one trained alone |",
            "|---|---|---|---|",
            f"| one after the other, {threads} threads each | {after:.1f} | 1.00 | |",
            f"| at once, {max(1, threads // len(works))} thread(s) each | {at_once:.1f} | {at_once / after:.2f} | "
            f"{equal}/{len(works)} |"]
    write_section("Fine-tunes one after the other and at once", rows,
                   f"{what[0].upper()}{what[1:]}; {args.epochs} epochs of batch {args.batch}, lr 3e-4 (the default "
                   f"run's fine-tune settings).")


if __name__ == "__main__":
    main()
