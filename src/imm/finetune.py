"""Fine-tuning: SFT on the verified samples (docs/method.md §2, F_t = fine-tune(init, D_t)).

An explicit training loop, no Trainer: loss on the response tokens only, AdamW, linear warm-up then
cosine decay, gradient accumulation, gradient clipping, length-bucketed batches (little padding),
fp32 on CPU and bf16 autocast where the GPU supports it (or wherever `bf16_autocast: true` asks).

`method: lora` trains a LoRA adapter (Hu et al., arXiv 2106.09685) through peft and folds it into the
weights before F_t is saved: F_t is a plain checkpoint and F_t − init is exactly B·A·(alpha/rank) on
the targeted projections, zero elsewhere, so merging sees the LoRA update as its task vector.

`processes: N` (or an `accelerate_config` file) runs the same loop as N processes through Hugging Face
accelerate (imm.finetune_launch, which picks this process or those): each process trains its share of every batch and the gradients are
summed, so N processes take the steps one process takes (docs/scale.md).
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from imm.config import FinetuneConfig, FinetuneMethod
from imm.errors import UserError
from imm.progress import progress

IGNORE = -100  # label of tokens that carry no loss (prompt and padding)


@dataclass(frozen=True)
class TrainStats:
    steps: int
    examples: int
    target_tokens: int  # tokens that carried loss
    padding_share: float  # padded positions / all positions in the batches
    tokens_per_s: float  # non-padding tokens processed per second
    final_loss: float
    seconds: float
    prompt_truncated: int = 0  # examples whose prompt lost worked examples from the left to fit max_length
    dropped_too_long: int = 0  # examples whose question and response alone exceed max_length: not trained on


def _encode(tokenizer, prompt: str, response: str, max_length: int,
            question_at: int = 0) -> tuple[list[int], list[int], bool] | None:
    """(input_ids, labels, whether the prompt lost tokens), or None when the example cannot fit.

    input_ids = prompt + response + eos, labels = -100 on the prompt (loss on the response only), at most
    `max_length` tokens. The response is always whole; the prompt loses tokens from the left, never from its
    question (prompt[question_at:], imm.prompts.Prompter.question_at): without it the response would be
    learned as an answer to nothing, so an example whose question and response do not fit is dropped."""
    context = tokenizer(prompt[:question_at], add_special_tokens=False)["input_ids"] if question_at else []
    question = tokenizer(prompt[question_at:], add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    room = max_length - len(question) - len(r)
    if room < 0:
        return None
    p = context[len(context) - min(room, len(context)):] + question
    return p + r, [IGNORE] * len(p) + r, room < len(context)


def encode_example(tokenizer, prompt: str, response: str, max_length: int,
                   question_at: int = 0) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) of one example under `_encode`'s rule; None when its question and response do not fit."""
    encoded = _encode(tokenizer, prompt, response, max_length, question_at)
    return encoded[:2] if encoded else None


@dataclass(frozen=True)
class Encoded:
    """The examples of D_t that fit `max_length`, each with its whole response, and what fitting cost."""

    examples: list[tuple[list[int], list[int]]]
    prompt_truncated: int  # kept, but their prompt lost worked examples from the left
    dropped_too_long: int  # question and response alone longer than max_length
    shortest: int  # tokens of the shortest question + response + eos (what max_length must reach)


def encode_examples(tokenizer, pairs: Sequence[tuple], max_length: int) -> Encoded:
    """Every (prompt, response[, question_at]) pair under `_encode`'s rule."""
    kept, truncated, needed = [], 0, []
    for prompt, response, *question_at in pairs:
        encoded = _encode(tokenizer, prompt, response, max_length, *question_at)
        if encoded is None:  # what it needs: its question (no worked example) and response
            needed.append(len(_encode(tokenizer, prompt[sum(question_at):], response, 10**9)[0]))
            continue
        kept.append(encoded[:2])
        truncated += encoded[2]
    return Encoded(kept, truncated, len(needed), min(needed, default=0))


def require_examples(encoded: Encoded, max_length: int, what: str = "training examples") -> None:
    """Stop when no example fits: training on nothing would leave F_t = init with no word said."""
    if encoded.examples or not encoded.dropped_too_long:
        return
    raise UserError(f"none of the {encoded.dropped_too_long} {what} fits finetune.max_length={max_length} "
                    f"with its whole question and response (the shortest needs {encoded.shortest} tokens); raise "
                    f"finetune.max_length to at least {encoded.shortest}")


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


def check_finetune(f: FinetuneConfig) -> None:
    """LoRA's fields beyond their declared ranges (config.check_ranges); whether the target modules exist is
    known only once the model loads."""
    checks = [(bool(f.lora_targets), "finetune.lora_targets must name at least one module, e.g. [q_proj, v_proj]"),
              (f.bf16_autocast in (True, False, "auto"),
               f"finetune.bf16_autocast must be auto, true or false, got {f.bf16_autocast!r}")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


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


def _share(rows: list, rank: int, world: int) -> tuple[list, float]:
    """This process's rows of a micro-batch (rank, rank + world, ...) and their weight: a process whose
    share is empty runs one row at weight 0, since every process must take part in every gradient sum."""
    mine = rows[rank::world]
    return (mine, 1.0) if mine else (rows[:1], 0.0)


def _accumulate(model, group: list[list], pad_id: int, use_bf16: bool, device, accelerator=None) -> tuple[float, int, int, int]:
    """Backward over one optimizer step's micro-batches (each a list of encoded examples), the loss normalised
    by the group's target tokens (so accumulation equals one big batch). Returns (mean loss, targets, real,
    padded tokens) of the whole group.

    With `accelerator` this process backs its share of each micro-batch: every process holds the whole group,
    so the global target count needs no communication; accelerate averages the gradients over the W processes
    and divides by its accumulation steps, hence the factor W·A that makes the sum equal one process's."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    steps = accelerator.gradient_accumulation_steps if accelerator else 1
    n_targets = sum(sum(t != IGNORE for t in labels[1:]) for rows in group for _, labels in rows)
    real_steps = len(group)
    group = group + [group[-1]] * (steps - len(group))  # a short last group keeps accelerate's count: weight 0
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, real tokens, padded positions
    for i, rows in enumerate(group):
        rows, weight = _share(rows, rank, world)
        weight = weight if i < real_steps else 0.0
        batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
        with accelerator.accumulate(model) if accelerator else nullcontext():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, _ = sum_loss(model, batch)
            scaled = loss * weight * world * steps / max(1, n_targets)
            accelerator.backward(scaled) if accelerator else scaled.backward()
        totals += torch.tensor([float(loss.detach()) * weight, int(batch["attention_mask"].sum()) * weight,
                                batch["attention_mask"].numel() * weight], dtype=torch.float64)
    if accelerator:
        totals = accelerator.reduce(totals.to(accelerator.device), "sum").cpu()
    loss_sum, real, padded = totals.tolist()
    return loss_sum / max(1, n_targets), n_targets, int(real), int(padded)


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
    """Fine-tune `model` in place on (prompt, response[, question_at]) pairs (`encode_examples`); `log` gets one
    JSON line per step."""
    return train_processes(model, tokenizer, pairs, cfg, seed=seed, desc=desc, log=log)[1]


def _prepare(model, cfg: FinetuneConfig, total: int, accelerator):
    """(model, optimizer, scheduler, device): with `accelerator`, model and optimizer prepared together (as
    FSDP and DeepSpeed need). The scheduler is ours, stepped once per optimizer step: accelerate's would step
    once per process."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt, sched = _optimizer(model, cfg, total)
    if accelerator is None:
        return model, opt, sched, model.device
    model, opt = accelerator.prepare(model, opt)
    return model, opt, sched, accelerator.device


# [ours] ‖θ‖ grown past this many times its value before training means the weights exploded, whatever
# the loss says: a fine-tune moves weights by a small fraction of their norm (lr=1e9 moves them by 10^9).
WEIGHT_GROWTH_LIMIT = 4.0


def weight_norm(model, accelerator=None) -> float:
    """‖θ‖ over every weight (of every process's shard); NaN or Inf when any weight is."""
    params = [w.detach() for w in model.parameters() if w.numel()]
    squares = torch.stack([torch.linalg.vector_norm(w.float()) ** 2 for w in params]).sum().double().reshape(1)
    return float(accelerator.reduce(squares.to(accelerator.device), "sum") if accelerator else squares) ** 0.5


def check_step(grad_norm, weights: float, start: float, step: int, total: int) -> None:
    """After optimizer step `step` (the last included): a finite gradient norm and finite weights whose
    norm stayed within WEIGHT_GROWTH_LIMIT of the start, or the stage stops with one line."""
    fix = "F_t is not saved: lower finetune.learning_rate or finetune.max_grad_norm"
    if grad_norm is not None and not math.isfinite(float(grad_norm)):
        raise UserError(f"fine-tuning diverged: the gradient norm is {float(grad_norm)} at optimizer step {step} "
                        f"of {total}; {fix}")
    if not math.isfinite(weights):
        raise UserError(f"fine-tuning diverged: NaN or Inf weights at optimizer step {step} of {total}; {fix}")
    if weights > WEIGHT_GROWTH_LIMIT * start:
        raise UserError(f"fine-tuning diverged: the weight norm grew from {start:.4g} to {weights:.4g} (over "
                        f"{WEIGHT_GROWTH_LIMIT:g}x) at optimizer step {step} of {total}; {fix}")


def train_processes(model, tokenizer, pairs: Sequence[tuple[str, str]], cfg: FinetuneConfig, *, seed: int = 0,
                    desc: str | None = "fine-tune", log: Path | None = None, accelerator=None) -> tuple[object, TrainStats]:
    """`train`, as one of `accelerator.num_processes` processes when an accelerator is given: every process
    draws the same batches (same seed) and trains its share of each; only the main one writes `log`. Returns
    the model (wrapped by accelerate where it prepared it: imm.finetune_launch saves it) and global stats."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = encode_examples(tokenizer, pairs, cfg.max_length)
    require_examples(encoded, cfg.max_length)
    examples = encoded.examples
    lengths = [len(ids) for ids, _ in examples]
    total = math.ceil(math.ceil(len(examples) / cfg.batch_size) / cfg.grad_accum) * cfg.epochs
    model, opt, sched, device = _prepare(model, cfg, total, accelerator)
    use_bf16 = use_bf16_autocast(cfg.bf16_autocast, device.type)
    main = accelerator is None or accelerator.is_main_process
    steps = targets = real = padded = 0
    loss, t0 = float("nan"), time.perf_counter()
    bar = progress(total, desc, "step", disable=desc is None or not main)
    start_norm = weight_norm(model, accelerator)
    model.train()
    with step_log(log if main else None) as write:
        for epoch in range(cfg.epochs):
            batches = bucketed_batches(lengths, cfg.batch_size, cfg.bucket_chunks, rng)
            for start in range(0, len(batches), cfg.grad_accum):
                group = [[examples[i] for i in b] for b in batches[start:start + cfg.grad_accum]]
                began, lr = time.perf_counter(), sched.get_last_lr()[0]  # the rate this step uses
                loss, n, r, p = _accumulate(model, group, tokenizer.pad_token_id, use_bf16, device, accelerator)
                check_finite_loss(loss, steps + 1, total)
                clip = accelerator.clip_grad_norm_ if accelerator else torch.nn.utils.clip_grad_norm_
                norm = clip(_trainable(model), cfg.max_grad_norm)  # before clipping; DeepSpeed clips itself: None
                opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
                steps, targets, real, padded = steps + 1, targets + n, real + r, padded + p
                check_step(norm, weight_norm(model, accelerator), start_norm, steps, total)
                write({"step": steps, "epoch": epoch + 1, "loss": loss, "lr": lr,
                       "grad_norm": None if norm is None else float(norm),
                       "tokens_per_s": r / max(time.perf_counter() - began, 1e-9),
                       "seconds": round(time.perf_counter() - t0, 3)})
                bar.set_postfix(loss=f"{loss:.3f}")
                bar.update(1)
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    return model, TrainStats(steps, len(examples), targets, 1 - real / max(1, padded), real / max(seconds, 1e-9), loss,
                             seconds, encoded.prompt_truncated, encoded.dropped_too_long)


def load_for_training(init, cfg: FinetuneConfig, *, seed: int, device: str = "auto"):
    """(model, tokenizer): a float32 copy of `init`, under a fresh LoRA adapter where `cfg.method` is lora."""
    from imm.models import load_model

    model, tokenizer = load_model(init, device=device, dtype="float32")
    if cfg.method == FinetuneMethod.LORA:
        torch.manual_seed(seed)  # the adapter's A is random: drawn from the stage's seed, alike in every process
        model = add_lora(model, cfg)
    return model, tokenizer


def finetune_here(init, examples: Sequence, cfg: FinetuneConfig, out, stats_out, *, seed: int,
                  device: str = "auto", log_out: Path | None = None, dtype: str = "float32") -> str:
    """F_t = fine-tune(init, D_t) in this process: train a float32 copy of `init` on `examples`
    (imm.verify.training_set.Example) and save it to `out` in `dtype` (θ0's own: imm.models.checkpoint_dtype);
    the stats are written first, since the checkpoint marks the stage done. imm.finetune_launch.finetune_checkpoint
    calls this, or the same loop as N processes."""
    from imm.models import load_model, save_model
    from imm.outputs import atomic_write_json

    if not examples:
        save_model(*load_model(init, device=device, dtype=dtype), out)
        return "no verified sample: F_t is a copy of its init (warning recorded)"
    model, tokenizer = load_for_training(init, cfg, seed=seed, device=device)
    where = "/".join(Path(out).parts[-3:-1])  # arms/<arm>/iter_<t>/finetuned: "<arm>/iter_<t>" names the bar
    stats = train(model, tokenizer, [(e.prompt, e.response, e.question_at) for e in examples], cfg, seed=seed,
                  desc=f"fine-tune {where}", log=log_out)
    atomic_write_json(stats_out, stats)
    trained = fold_lora(model) if cfg.method == FinetuneMethod.LORA else model
    save_model(trained.to(getattr(torch, dtype)), tokenizer, out)
    return describe(stats)


def describe(stats: TrainStats) -> str:
    """The stage's log line: what was trained on, and what fitting finetune.max_length cost."""
    return (f"{stats.examples} examples ({stats.prompt_truncated} prompts shortened, {stats.dropped_too_long} dropped "
            f"as too long), {stats.steps} steps, loss {stats.final_loss:.3f}, {stats.tokens_per_s:,.0f} tok/s")
