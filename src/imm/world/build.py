"""`imm world build`: pretrain the tiny base reasoner of the built-in default from scratch.

    imm world build [--teacher] [--out DIR] [--steps N] [--seed S] [--overwrite]

Trains a byte-level BPE tokenizer and a small Llama on gold solutions of every family (pretrain
split, loss on the solution only), then measures greedy accuracy per family on the test split.
Deterministic under a seed on one machine. The result ships as imm/world/base. With --teacher the
same recipe trains twice as long (1,600 steps; its first 800 are the base's) and ships as
imm/world/teacher: the stronger model that writes the distillation arms' solutions.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from imm.models import BUILTIN_DIR, TEACHER_DIR, pick_device, save_model, write_checkpoint
from imm.errors import UserError
from imm.finetune import TrainStats, collate, encode_example, sum_loss
from imm.outputs import atomic_write_json, check_output_dir, output_dir
from imm.tasks.arith import FAMILIES, IN_DOMAIN, stream
from imm.tasks.registry import get_task
from imm.world.tokenizer import train_tokenizer


@dataclass(frozen=True)
class BuildConfig:
    steps: int = 800  # the shipped base (src/imm/world/base) is this build
    batch_size: int = 64
    learning_rate: float = 1e-3  # constant after warm-up, so a build of N steps is a prefix of a longer one
    warmup_steps: int = 100
    weight_decay: float = 0.1
    in_domain_share: float = 0.4  # the rest is split evenly over the out-of-domain families
    layers: int = 8
    hidden: int = 128
    intermediate: int = 256
    heads: int = 4
    vocab_size: int = 512
    eval_size: int = 300
    seed: int = 0


TEACHER_STEPS = 1600  # the shipped teacher (src/imm/world/teacher): the base's recipe, twice as long


def pretrain_stream(cfg: BuildConfig) -> Iterator[tuple[str, str]]:
    """Endless (prompt, " solution") pairs from the pretrain split; each example's family is drawn
    by share, so the first N examples do not depend on how many are drawn in all."""
    rng = random.Random(cfg.seed)
    others = [f for f in FAMILIES if f != IN_DOMAIN]
    weights = [cfg.in_domain_share] + [(1 - cfg.in_domain_share) / len(others)] * len(others)
    streams = {f: stream(f, "pretrain") for f in FAMILIES}
    tasks = {f: get_task(f) for f in FAMILIES}
    while True:
        family = rng.choices([IN_DOMAIN, *others], weights)[0]
        problem = next(streams[family])
        yield tasks[family].prompt(problem), " " + problem.solution


def new_model(cfg: BuildConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=None,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def family_accuracy(model, tokenizer, size: int) -> dict[str, float]:
    """Greedy strict-match accuracy on the first `size` test problems of every family."""
    from imm.engines.hf import HFEngine
    from imm.evaluation import evaluate

    out, engine = {}, HFEngine(model, tokenizer, batch_size=256)
    for family in FAMILIES:
        task = get_task(family)
        result = evaluate(engine, task, task.problems("test")[:size], max_new_tokens=96)
        out[family] = result.metrics["strict-match"]
    return out


def pretrain(model, tokenizer, cfg: BuildConfig, every: int = 0, on_checkpoint: Callable[[int], None] | None = None) -> TrainStats:
    """Next-token loss on the solution only, AdamW at a constant rate after a linear warm-up."""
    data = pretrain_stream(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps))
    tokens, loss_value, t0 = 0, float("nan"), time.perf_counter()
    model.train()
    for step in tqdm(range(1, cfg.steps + 1), desc="pretrain", unit="step"):
        pairs = [next(data) for _ in range(cfg.batch_size)]
        batch = collate([encode_example(tokenizer, p, r, 256) for p, r in pairs], tokenizer.pad_token_id)
        loss, n = sum_loss(model, {k: v.to(model.device) for k, v in batch.items()})
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        tokens, loss_value = tokens + int(batch["attention_mask"].sum()), float(loss.detach()) / n
        if every and on_checkpoint and step % every == 0:
            model.eval(), on_checkpoint(step), model.train()
    model.eval()
    seconds = time.perf_counter() - t0
    return TrainStats(cfg.steps, cfg.steps * cfg.batch_size, tokens, 0.0, tokens / seconds, loss_value, seconds)


WORLD_MODEL = "world-model"  # the kind of output `imm world build` writes (imm.outputs)


def steps_folder(out: Path) -> Path:
    return out.parent / f"{out.name}-steps"


def build(out: Path, cfg: BuildConfig, device: str = "cpu", every: int = 0, overwrite: bool = False) -> dict:
    """Tokenizer, model, pretraining, accuracy per family; with `every`, a checkpoint and its
    accuracy on 100 problems per family every `every` steps under out/../<name>-steps/."""
    t0 = time.perf_counter()
    data = pretrain_stream(cfg)
    tokenizer = train_tokenizer((p + r for p, r in itertools.islice(data, 20000)), cfg.vocab_size)
    model = new_model(cfg, tokenizer).to(pick_device(device))

    def checkpoint(step: int) -> None:
        acc = family_accuracy(model, tokenizer, 100)
        print(f"step {step}: " + " ".join(f"{f}={a:.0%}" for f, a in acc.items()), flush=True)
        save_model(model, tokenizer, steps_folder(out) / f"step_{step}", overwrite=overwrite)

    stats = pretrain(model, tokenizer, cfg, every, checkpoint)
    accuracy = family_accuracy(model, tokenizer, cfg.eval_size)
    report = {"config": asdict(cfg), "device": device, "train": asdict(stats), "accuracy": accuracy,
              "parameters": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - t0}
    with output_dir(out, WORLD_MODEL, overwrite=overwrite) as tmp:
        write_checkpoint(model.cpu(), tokenizer, tmp)
        atomic_write_json(tmp / "build_report.json", report)
    return report


def check_outputs(out: Path, cfg: BuildConfig, every: int, overwrite: bool) -> None:
    """Every folder the build will write is checked before the training starts."""
    check_output_dir(out, WORLD_MODEL, overwrite=overwrite)
    for step in range(every, cfg.steps + 1, every) if every else ():
        check_output_dir(steps_folder(out) / f"step_{step}", "checkpoint", overwrite=overwrite)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="pretrain the tiny base model (the shipped one is imm/world/base)")
    b.add_argument("--teacher", action="store_true", help=f"build the teacher ({TEACHER_STEPS} steps) into the "
                   "shipped teacher folder instead of the base")
    b.add_argument("--out", type=Path, help="output model folder (default: the shipped base, or teacher)")
    b.add_argument("--overwrite", action="store_true", help="replace --out (and its step checkpoints) when an "
                   "earlier build wrote it; the shipped base is such a folder")
    b.add_argument("--steps", type=int, help=f"optimizer steps of pretraining (default {BuildConfig.steps}, "
                   f"teacher {TEACHER_STEPS})")
    b.add_argument("--seed", type=int, default=BuildConfig.seed)
    b.add_argument("--device", default="cpu", help="cpu (the shipped base's reference), cuda, or auto")
    b.add_argument("--checkpoint-every", type=int, default=0, help="also save and score a checkpoint every N steps")


def main(args: argparse.Namespace) -> int:
    args.out = args.out or (TEACHER_DIR if args.teacher else BUILTIN_DIR)
    if args.steps is None:
        args.steps = TEACHER_STEPS if args.teacher else BuildConfig.steps
    if args.steps <= 0:
        raise UserError(f"--steps must be positive, got {args.steps}")
    if args.checkpoint_every < 0:
        raise UserError(f"--checkpoint-every must be 0 (off) or positive, got {args.checkpoint_every}")
    cfg = BuildConfig(steps=args.steps, seed=args.seed)
    check_outputs(args.out, cfg, args.checkpoint_every, args.overwrite)
    report = build(args.out, cfg, args.device, args.checkpoint_every, args.overwrite)
    print(f"built {args.out} in {report['seconds']:.0f}s ({report['parameters']:,} parameters)")
    for family, acc in report["accuracy"].items():
        print(f"  {family:<16} {acc:6.1%}")
    return 0
