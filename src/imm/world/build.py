"""`imm world build`: pretrain the tiny base reasoner of the built-in default from scratch.

    imm world build [--out DIR] [--steps N] [--seed S]

Trains a byte-level BPE tokenizer and a small Llama on gold solutions of every family (pretrain
split, loss on the solution only), then measures greedy accuracy per family on the test split.
Deterministic under a seed on one machine. The result ships as imm/world/base.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from imm.checkpoint import BUILTIN_DIR, pick_device, save_model
from imm.errors import UserError
from imm.finetune import FinetuneConfig, train
from imm.layout import atomic_write_json
from imm.sampling import generate
from imm.tasks.registry import get_task
from imm.world.families import FAMILIES, IN_DOMAIN, stream
from imm.world.tokenizer import train_tokenizer


@dataclass(frozen=True)
class BuildConfig:
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    in_domain_share: float = 0.4  # the rest is split evenly over the out-of-domain families
    layers: int = 8
    hidden: int = 128
    intermediate: int = 384
    heads: int = 4
    vocab_size: int = 512
    eval_size: int = 300
    seed: int = 0


def pretrain_pairs(cfg: BuildConfig) -> list[tuple[str, str]]:
    """(prompt, " solution") pairs from the pretrain split, mixed by family share."""
    n = cfg.steps * cfg.batch_size
    others = [f for f in FAMILIES if f != IN_DOMAIN]
    counts = {IN_DOMAIN: round(n * cfg.in_domain_share)}
    counts |= {f: (n - counts[IN_DOMAIN]) // len(others) for f in others}
    pairs = []
    for family, count in counts.items():
        task = get_task(family)
        pairs += [(task.prompt(p), " " + p.solution) for p in itertools.islice(stream(family, "pretrain"), count)]
    random.Random(cfg.seed).shuffle(pairs)
    return pairs


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
    out = {}
    for family in FAMILIES:
        task = get_task(family)
        problems = task.problems("test")[:size]
        completions = generate(model, tokenizer, [task.prompt(p) for p in problems], max_new_tokens=96, batch_size=256, stop=task.stop)
        out[family] = sum(task.check(c[0].text, p).correct for c, p in zip(completions, problems)) / len(problems)
    return out


def build(out: Path, cfg: BuildConfig, device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    pairs = pretrain_pairs(cfg)
    tokenizer = train_tokenizer((p + r for p, r in pairs[:20000]), cfg.vocab_size)
    model = new_model(cfg, tokenizer).to(pick_device(device))
    ft = FinetuneConfig(learning_rate=cfg.learning_rate, epochs=1, batch_size=cfg.batch_size, warmup_ratio=0.03,
                        weight_decay=0.1, max_length=256)
    stats = train(model, tokenizer, pairs, ft, seed=cfg.seed, desc="pretrain")
    accuracy = family_accuracy(model, tokenizer, cfg.eval_size)
    report = {"config": asdict(cfg), "train": asdict(stats), "accuracy": accuracy,
              "parameters": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - t0}
    save_model(model.cpu(), tokenizer, out)
    atomic_write_json(out / "build_report.json", report)
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="pretrain the tiny base model (the shipped one is imm/world/base)")
    b.add_argument("--out", type=Path, default=BUILTIN_DIR, help="output model folder (default: the shipped base)")
    b.add_argument("--steps", type=int, default=BuildConfig.steps, help="optimizer steps of pretraining")
    b.add_argument("--seed", type=int, default=BuildConfig.seed)
    b.add_argument("--device", default="cpu", help="cpu (the shipped base's reference), cuda, or auto")


def main(args: argparse.Namespace) -> int:
    if args.steps <= 0:
        raise UserError(f"--steps must be positive, got {args.steps}")
    report = build(args.out, BuildConfig(steps=args.steps, seed=args.seed), args.device)
    print(f"built {args.out} in {report['seconds']:.0f}s ({report['parameters']:,} parameters)")
    for family, acc in report["accuracy"].items():
        print(f"  {family:<16} {acc:6.1%}")
    return 0
