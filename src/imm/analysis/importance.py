"""Layer importance for reasoning on a fixed probe set of verified solutions (docs/method.md §3).

    ablation  accuracy(θ) − accuracy(θ with block l skipped), greedy, zero-shot: the accuracy drop
    gradient  ‖∇_{θ_l} L‖₂, L = the SFT loss (mean over response tokens of the whole probe) on the
              gold solutions, the same loss fine-tuning minimises
    influence 1 − cos(x_in, x_out), ShortGPT's block influence (Men et al., arXiv 2403.03853): x_in, x_out the
              hidden state entering and leaving block l at one token (a row of (B, T, hidden)), the cosine
              averaged over every real token of prompt + gold solution of the whole probe (padding masked);
              one forward pass, no generation, no gradient: cheap enough for real models

The probe is the last `size` training problems of a task that carry a gold solution: never a scored (test)
problem, and never one the loop samples (it samples the first `data.train_questions` training problems;
a run whose two meet says so as it starts: `probe_overlap`). The prompt is the run's
(imm.prompts, as sampling and evaluation build it) and the response the gold solution, each fitted to the
run's finetune.max_length as fine-tuning fits its examples (imm.finetune.encode_examples: the response
whole, the prompt shortened from the left but never losing its question).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from imm.config import EvalConfig, FinetuneConfig, ImportanceKind
from imm.engines.hf import generate
from imm.errors import UserError
from imm.finetune import collate, encode_examples, require_examples, sum_loss
from imm.prompts import PromptConfig, prompter
from imm.tasks.base import Problem, Task
from imm.tasks.registry import get_task
from imm.tensor_files import BLOCK_CONTAINERS

PROBE_SPLIT = "train"  # scored problems are test problems: the probe must not see them


@dataclass(frozen=True)
class Probe:
    task: Task
    problems: tuple[Problem, ...]
    prompt: PromptConfig = PromptConfig()  # asked as sampling and evaluation ask (imm.prompts)
    max_length: int = FinetuneConfig.max_length  # the run's finetune.max_length: the loss fine-tuning trains


@dataclass(frozen=True)
class Importance:
    """Importance of every decoder block of one checkpoint; `values` maps block index -> importance."""

    kind: ImportanceKind
    values: dict[int, float]
    accuracy: float | None = None  # ablation only: the probe accuracy with no block skipped
    skipped_accuracy: dict[int, float] | None = None  # ablation only: accuracy with block l skipped


def probe_set(task_name: str, size: int, prompt: PromptConfig = PromptConfig(),
              max_length: int = FinetuneConfig.max_length) -> Probe:
    """The last `size` training problems of `task_name` that have a gold solution; UserError if none do, or
    if any of them is also a test problem (a task whose two splits come from one file)."""
    if size < 1:
        raise UserError(f"probe size must be at least 1, got {size}; pass --probe-size 64")
    task = get_task(task_name)
    problems = tuple(p for p in task.problems(PROBE_SPLIT) if p.solution)[-size:]
    if not problems:
        raise UserError(f"task {task_name!r} has no training problems with a gold solution; pick another --probe task")
    scored = {p.question for p in task.problems("test")}
    if any(p.question in scored for p in problems):
        raise UserError(f"task {task_name!r}: its training problems include test problems, so the probe would see "
                        f"scored problems; give the task separate train and test files, or pick another --probe task")
    return Probe(task, problems, prompt, max_length)


def probe_overlap(probe_task: str, probe_size: int, train_task: str, train_questions: int) -> int:
    """How many probe problems the loop also samples (the first `train_questions` of the training split, where
    the probe takes the last `probe_size`): 0 unless a run samples nearly every training problem."""
    if probe_task != train_task:
        return 0
    return max(0, train_questions + probe_size - len(get_task(train_task).problems(PROBE_SPLIT)))


def probe_examples(tokenizer, probe: Probe) -> list[tuple[list[int], list[int]]]:
    """The probe's (input_ids, labels) as fine-tuning encodes its examples; a UserError where none fits."""
    ask = prompter(probe.task, probe.prompt, tokenizer)
    prompts = [ask(p) for p in probe.problems]
    pairs = [(text, ask.response(p.solution), ask.question_at(p, text)) for p, text in zip(probe.problems, prompts)]
    encoded = encode_examples(tokenizer, pairs, probe.max_length)
    require_examples(encoded, probe.max_length, what=f"probe examples of {probe.task.name}")
    return encoded.examples


def decoder_blocks(model) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM (Llama/Qwen/Mistral `model.layers`, GPT-2 style `h`), found under the
    attribute names whose tensors `imm.tensor_files.block_index` places in blocks, so both count blocks alike."""
    base = model.base_model
    for name in BLOCK_CONTAINERS:
        blocks = getattr(base, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise UserError(f"cannot find the decoder blocks of {type(model).__name__}; layer analysis needs a decoder-only LM")


@contextmanager
def skipped_block(model, layer: int) -> Iterator[None]:
    """Within the block, block `layer` is the identity on the residual stream: its output is its input.

    The block still runs and fills its own KV-cache slot, then its output is discarded, so every cache type
    (dynamic, static, sliding-window) keeps the shape the model expects. Removing the block from the ModuleList
    instead leaves its slot empty, and `Cache.get_seq_length()` reads slot 0 by default: skipping block 0 would
    then depend on how each transformers version finds the cache length. The cost is one block's compute."""

    def keep_input(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = decoder_blocks(model)[layer].register_forward_hook(keep_input, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def probe_accuracy(model, tokenizer, probe: Probe, *, max_new_tokens: int, batch_size: int) -> float:
    """Greedy zero-shot accuracy on the probe, judged by the task's one definition of correct."""
    ask = prompter(probe.task, probe.prompt, tokenizer)
    outputs = generate(model, tokenizer, [ask(p) for p in probe.problems], k=1, temperature=0.0,
                       max_new_tokens=max_new_tokens, batch_size=batch_size, stop=ask.stop)
    correct = [probe.task.check(out[0].text, p).correct for out, p in zip(outputs, probe.problems)]
    return sum(correct) / len(correct)


def ablation_importance(model, tokenizer, probe: Probe, *, max_new_tokens: int = EvalConfig.max_new_tokens,
                        batch_size: int = EvalConfig.batch_size) -> Importance:
    """Accuracy drop on the probe when each block in turn is skipped (identity on the residual stream)."""
    full = probe_accuracy(model, tokenizer, probe, max_new_tokens=max_new_tokens, batch_size=batch_size)
    skipped = {}
    for layer in range(len(decoder_blocks(model))):
        with skipped_block(model, layer):
            skipped[layer] = probe_accuracy(model, tokenizer, probe, max_new_tokens=max_new_tokens, batch_size=batch_size)
    drops = {layer: full - acc for layer, acc in skipped.items()}
    return Importance(ImportanceKind.ABLATION, drops, accuracy=full, skipped_accuracy=skipped)


def gradient_importance(model, tokenizer, probe: Probe, *, batch_size: int = 16) -> Importance:
    """‖∇_{θ_l} L‖₂ per block, L the mean response-token cross-entropy over the whole probe."""
    examples = probe_examples(tokenizer, probe)
    blocks = decoder_blocks(model)
    with _grads_only_for(model, blocks):
        tokens = 0
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size], tokenizer.pad_token_id)
            loss, count = sum_loss(model, {k: v.to(model.device) for k, v in batch.items()})
            loss.backward()  # summed loss: accumulated gradients are of the total, divided once below
            tokens += count
        norms = {layer: _grad_norm(block) / max(tokens, 1) for layer, block in enumerate(blocks)}
    return Importance(ImportanceKind.GRADIENT, norms)


def cosine_sum(x_in: torch.Tensor, x_out: torch.Tensor, mask: torch.Tensor) -> float:
    """Σ over the real tokens of cos(x_in[b, t], x_out[b, t]); x_in, x_out (B, T, H), mask (B, T), 1 = real token.
    A zero row has cosine 0 (torch's eps)."""
    cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (B, T)
    return float(cos.double()[mask.bool()].sum())


def influence_importance(model, tokenizer, probe: Probe, *, batch_size: int = 16) -> Importance:
    """1 − (mean cosine between each block's input and output rows over the probe's real tokens), per block."""
    examples = probe_examples(tokenizer, probe)
    blocks = decoder_blocks(model)
    sums, tokens, mask = [0.0] * len(blocks), 0, None

    def hook(layer: int):
        def record(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, hidden)
            sums[layer] += cosine_sum(hidden, output[0] if isinstance(output, tuple) else output, mask)
        return record

    handles = [block.register_forward_hook(hook(i), with_kwargs=True) for i, block in enumerate(blocks)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = collate(examples[start : start + batch_size], tokenizer.pad_token_id)
                mask = batch["attention_mask"].to(model.device)  # (B, T)
                model(input_ids=batch["input_ids"].to(model.device), attention_mask=mask)
                tokens += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Importance(ImportanceKind.INFLUENCE, {layer: 1 - total / max(tokens, 1) for layer, total in enumerate(sums)})


def _grad_norm(module: torch.nn.Module) -> float:
    squares = [p.grad.double().pow(2).sum() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


@contextmanager
def _grads_only_for(model, blocks: torch.nn.Module) -> Iterator[None]:
    """Gradients for the decoder blocks only (no memory spent on embedding/head grads); restores flags."""
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()  # no dropout: the gradient of the deterministic loss
    model.requires_grad_(False)
    blocks.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)


@dataclass(frozen=True)
class Measure:
    """One importance measure: how it is computed on a loaded model, and how its numbers are shown."""

    measure: Callable[..., Importance]  # (model, tokenizer, probe, max_new_tokens, batch_size) -> Importance
    column: str  # its column of importance.csv
    axis: str  # what its numbers are, for a figure's axis
    generates: bool  # it generates text (greedy answers), so max_new_tokens shapes its numbers
    in_points: bool = False  # a share of the probe's accuracy: shown ×100, in points


# A new measure is one function above, one row here and its name in imm.config.ImportanceKind.
MEASURES: dict[ImportanceKind, Measure] = {
    ImportanceKind.ABLATION: Measure(lambda m, tok, probe, new, batch: ablation_importance(
        m, tok, probe, max_new_tokens=new, batch_size=batch), "ablation_drop", "accuracy drop when skipped",
        generates=True, in_points=True),
    ImportanceKind.GRADIENT: Measure(lambda m, tok, probe, new, batch: gradient_importance(
        m, tok, probe, batch_size=max(1, batch // 4)), "gradient_l2", "gradient norm ‖∇L‖", generates=False),
    ImportanceKind.INFLUENCE: Measure(lambda m, tok, probe, new, batch: influence_importance(
        m, tok, probe, batch_size=max(1, batch // 4)), ImportanceKind.INFLUENCE.value, "block influence 1 − cos",
        generates=False),  # its column is its name
}


def axis_label(kind: str, points: str = "{}") -> str:
    """A measure's axis label; `points` formats it where its numbers are a share of accuracy, e.g. "{} (pts)"."""
    row = MEASURES.get(kind)
    if row is None:
        return str(kind)
    return points.format(row.axis) if row.in_points else row.axis


def check_kinds(kinds: Sequence[str]) -> None:
    unknown = sorted(set(kinds) - set(MEASURES))
    if unknown:
        raise UserError(f"unknown importance kind(s) {unknown}; choose from {', '.join(MEASURES)}")


def measure(model, tokenizer, probe: Probe, kinds: Sequence[str], *, max_new_tokens: int = EvalConfig.max_new_tokens,
            batch_size: int = EvalConfig.batch_size) -> dict[str, Importance]:
    """Every importance kind asked for, on one loaded model, in the table's order."""
    check_kinds(kinds)
    return {kind: row.measure(model, tokenizer, probe, max_new_tokens, batch_size)
            for kind, row in MEASURES.items() if kind in kinds}
