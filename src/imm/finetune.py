"""Fine-tuning: SFT on the verified samples (METHOD.md §2, F_t = fine-tune(init, D_t)).

An explicit training loop, no Trainer: loss on the response tokens only, AdamW, linear warm-up then
cosine decay, gradient accumulation, gradient clipping, length-bucketed batches (little padding),
fp32 on CPU and bf16 autocast where the GPU supports it (or wherever `bf16_autocast: true` asks).

`method: lora` trains a LoRA adapter (Hu et al., arXiv 2106.09685) through peft and folds it into the
weights before F_t is saved: F_t is a plain checkpoint and F_t − init is exactly B·A·(alpha/rank) on
the targeted projections, zero elsewhere, so merging sees the LoRA update as its task vector.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from imm.errors import UserError

IGNORE = -100  # label of tokens that carry no loss (prompt and padding)
METHODS = ("full", "lora")
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _run_option(default):
    """How to compute, not what (imm.config.run_option; defined here too since config imports this module)."""
    return field(default=default, metadata={"run_option": True})


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: str = "generator"  # [paper code] generator: F_t starts from G; base: from θ0 [ours]
    learning_rate: float = 2e-5  # [paper code]
    epochs: int = 3  # [paper code]
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.03  # [paper code]
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512  # [paper code]
    bucket_chunks: int = 50  # batches per length-sorted chunk: larger = less padding, less shuffling
    method: str = "full"  # full: every weight [paper]; lora: a folded LoRA adapter [ours]
    lora_rank: int = 16
    lora_alpha: float = 32.0  # the update is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LLAMA_PROJECTIONS  # module names: attention and MLP projections
    bf16_autocast: bool | str = _run_option("auto")  # auto: on a CUDA GPU with bf16 | true | false
    gradient_checkpointing: bool = _run_option(False)  # recompute activations in backward: less memory


@dataclass(frozen=True)
class TrainStats:
    steps: int
    examples: int
    target_tokens: int  # tokens that carried loss
    padding_share: float  # padded positions / all positions in the batches
    tokens_per_s: float  # non-padding tokens processed per second
    final_loss: float
    seconds: float


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], list[int]]:
    """input_ids = prompt + response + eos; labels = -100 on the prompt (loss on the response only)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids, labels = (p + r)[:max_length], ([IGNORE] * len(p) + r)[:max_length]
    return ids, labels


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on padding), each (B, T)."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, :len(x)], labels[row, :len(y)], mask[row, :len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def bucketed_batches(lengths: Sequence[int], batch_size: int, chunk: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort each chunk of `chunk` batches by length, cut into batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    span = batch_size * chunk
    for start in range(0, len(order), span):
        part = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def sum_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    targets = batch["labels"][:, 1:]  # (B, T-1): token t+1 is predicted at position t
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def check_finite_loss(loss: float, step: int, total: int) -> None:
    """Stop at the first NaN or Inf loss: training on would only spread it into every weight."""
    if not math.isfinite(loss):
        raise UserError(f"fine-tuning diverged: the loss is {loss} at optimizer step {step} of {total}; F_t is not "
                        f"saved: lower finetune.learning_rate, or check D_t for broken examples")


def lr_at(step: int, total: int, warmup: int) -> float:
    """Multiplier of the peak learning rate: linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]  # all of them, or only the LoRA factors


def _optimizer(model, cfg: FinetuneConfig, total_steps: int):
    opt = torch.optim.AdamW(_trainable(model), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = max(1, round(cfg.warmup_ratio * total_steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, total_steps, warmup))


def _accumulate(model, group: list[dict[str, torch.Tensor]], use_bf16: bool) -> tuple[float, int, int, int]:
    """Backward over one optimizer step's micro-batches, the loss normalised by the group's target
    tokens (so accumulation equals one big batch). Returns (mean loss, targets, real, padded tokens)."""
    n_targets = sum(int((g["labels"][:, 1:] != IGNORE).sum()) for g in group)
    loss_sum, real, padded = 0.0, 0, 0
    for batch in group:
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss, _ = sum_loss(model, batch)
        (loss / max(1, n_targets)).backward()
        loss_sum += float(loss.detach())
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return loss_sum / max(1, n_targets), n_targets, real, padded


@contextmanager
def step_log(path: Path | None) -> Iterator:
    """`write(record)` appends one JSON line per optimizer step to `path` (a fresh file per training) and,
    when tensorboard is installed, its scalars beside it; with no path it does nothing."""
    if path is None:
        yield lambda record: None
        return
    from imm.layout import tensorboard_dir

    try:
        from torch.utils.tensorboard import SummaryWriter
        board = SummaryWriter(str(tensorboard_dir(path)))
    except ImportError:  # tensorboard is optional
        board = None
    with open(path, "w", encoding="utf-8", buffering=1) as f:  # line-buffered: a long run can be watched
        def write(record: dict) -> None:
            f.write(json.dumps(record) + "\n")
            for name in ("loss", "lr", "tokens_per_s") if board else ():
                board.add_scalar(f"train/{name}", record[name], record["step"])
        yield write
    if board:
        board.close()


def use_bf16_autocast(setting: bool | str, device_type: str) -> bool:
    """auto: on a CUDA GPU that supports bf16; true: wherever torch autocasts (CPU included); false: never."""
    if setting == "auto":
        return device_type == "cuda" and torch.cuda.is_bf16_supported()
    return setting is True


def add_lora(model, cfg: FinetuneConfig):
    """`model` wrapped in a fresh LoRA adapter on `cfg.lora_targets` (B = 0, so it starts as `model`)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none")
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # peft names the target modules it did not find
        raise UserError(f"finetune.lora_targets {list(cfg.lora_targets)} do not fit this model "
                        f"({str(err).splitlines()[0]}); name its linear layers, e.g. [q_proj, v_proj]") from None


def fold_lora(model):
    """The plain model with W ← W + B·A·(alpha/rank) on every adapted module, the adapter removed."""
    return model.merge_and_unload()


def train(model, tokenizer, pairs: Sequence[tuple[str, str]], cfg: FinetuneConfig, *, seed: int = 0,
          desc: str | None = "fine-tune", log: Path | None = None) -> TrainStats:
    """Fine-tune `model` in place on (prompt, response) pairs; `log` gets one JSON line per step."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    examples = [encode_example(tokenizer, p, r, cfg.max_length) for p, r in pairs]
    lengths = [len(ids) for ids, _ in examples]
    total = math.ceil(math.ceil(len(examples) / cfg.batch_size) / cfg.grad_accum) * cfg.epochs
    opt, sched = _optimizer(model, cfg, total)
    use_bf16 = use_bf16_autocast(cfg.bf16_autocast, model.device.type)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    steps = targets = real = padded = 0
    loss, t0 = float("nan"), time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step", disable=desc is None, leave=False)
    model.train()
    with step_log(log) as write:
        for epoch in range(cfg.epochs):
            batches = bucketed_batches(lengths, cfg.batch_size, cfg.bucket_chunks, rng)
            for start in range(0, len(batches), cfg.grad_accum):
                group = [collate([examples[i] for i in b], tokenizer.pad_token_id) for b in batches[start:start + cfg.grad_accum]]
                began, lr = time.perf_counter(), sched.get_last_lr()[0]  # the rate this step uses
                loss, n, r, p = _accumulate(model, group, use_bf16)
                check_finite_loss(loss, steps + 1, total)
                torch.nn.utils.clip_grad_norm_(_trainable(model), cfg.max_grad_norm)
                opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
                steps, targets, real, padded = steps + 1, targets + n, real + r, padded + p
                write({"step": steps, "epoch": epoch + 1, "loss": loss, "lr": lr,
                       "tokens_per_s": r / max(time.perf_counter() - began, 1e-9),
                       "seconds": round(time.perf_counter() - t0, 3)})
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update(1)
    bar.close()
    if not all(bool(torch.isfinite(w).all()) for w in model.parameters()):  # a finite loss, an infinite gradient
        raise UserError(f"fine-tuning left NaN or Inf weights after step {steps} of {total}; F_t is not saved: "
                        f"lower finetune.learning_rate or finetune.max_grad_norm")
    model.eval()
    seconds = time.perf_counter() - t0
    return TrainStats(steps, len(examples), targets, 1 - real / max(1, padded), real / max(seconds, 1e-9), loss, seconds)


def finetune_checkpoint(init, examples: Sequence, cfg: FinetuneConfig, out, stats_out, *, seed: int,
                        device: str = "auto", log_out: Path | None = None) -> str:
    """F_t = fine-tune(init, D_t): train a float32 copy of `init` on `examples` (records with `prompt` and
    `response`) and save it to `out`; the stats are written first, since the checkpoint marks the stage done."""
    from imm.models import load_model, save_model
    from imm.outputs import atomic_write_json

    model, tokenizer = load_model(init, device=device, dtype="float32")
    if not examples:
        save_model(model, tokenizer, out)
        return "no verified sample: F_t is a copy of its init (warning recorded)"
    if cfg.method == "lora":
        model = add_lora(model, cfg)
    stats = train(model, tokenizer, [(e.prompt, e.response) for e in examples], cfg, seed=seed, log=log_out)
    atomic_write_json(stats_out, stats)
    save_model(fold_lora(model) if cfg.method == "lora" else model, tokenizer, out)
    return f"{stats.examples} examples, {stats.steps} steps, loss {stats.final_loss:.3f}, {stats.tokens_per_s:,.0f} tok/s"
