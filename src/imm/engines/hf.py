"""The `hf` engine: batched Hugging Face `generate` in this process, with a KV cache and left padding.

Prompts are sorted by length so a batch carries little padding, and every batch draws from its own
seeded generator state, so a resumed run samples exactly what an uninterrupted one would have.
`mean_entropy` is the mean, over the kept tokens, of the entropy of the processed next-token
distribution (after temperature and top-p) the token was drawn from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from imm.engines import decode
from imm.engines.records import Completion, Request
from imm.tasks.base import STOP_STRINGS


def _entropies(scores: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Per-step entropy of the (processed) next-token distribution: (steps, batch)."""
    return torch.stack([decode.step_entropy(step) for step in scores])


def generation_settings(tokenizer, *, k: int, temperature: float, top_p: float, max_new_tokens: int,
                        stop: Sequence[str]) -> dict:
    """Every generation field that shapes the next-token distribution, set explicitly [ours]: a checkpoint's
    own defaults (a repetition penalty, top-k, min-p, no-repeat n-grams, ...) never change what "greedy" or
    "temperature T, top-p P" means here. Temperature 0 is greedy decoding."""
    sample = temperature > 0
    return dict(
        max_new_tokens=max_new_tokens, min_new_tokens=0, num_return_sequences=k, num_beams=1, do_sample=sample,
        temperature=temperature if sample else 1.0, top_p=top_p if sample else 1.0, top_k=0 if sample else None,
        min_p=0.0 if sample else None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0,
        encoder_repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0, renormalize_logits=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, stop_strings=list(stop) or None,
        output_scores=True, return_dict_in_generate=True,
    )


def effective_settings(model, settings: dict) -> dict:
    """What generation really used: our fields, and the checkpoint's own for whatever we leave unset."""
    own = {k: v for k, v in model.generation_config.to_dict().items() if v is not None and not k.startswith("_")}
    return {**own, **{k: v for k, v in settings.items() if v is not None}}


@torch.no_grad()
def _generate_batch(model, tokenizer, prompts, k, temperature, top_p, max_new_tokens, stop, seed, own_loop=True):
    """k completions of each prompt: by `decode.decode` (the same records as `generate`, with finished rows
    leaving the batch) where it supports the model and settings, else by `model.generate`."""
    from transformers import GenerationConfig

    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    settings = generation_settings(tokenizer, k=k, temperature=temperature, top_p=top_p,
                                   max_new_tokens=max_new_tokens, stop=stop)
    if own_loop and decode.supports(model, effective_settings(model, settings)):
        new, entropy = decode.decode(model, tokenizer, enc["input_ids"], enc["attention_mask"], k=k,
                                     temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop)
    else:
        out = model.generate(**enc, generation_config=GenerationConfig(**settings), tokenizer=tokenizer)
        new = out.sequences[:, enc["input_ids"].shape[1]:]  # (batch*k, steps)
        entropy = _entropies(out.scores)  # (steps, batch*k)
    return [Completion.of(tokenizer, row.tolist(), ent.tolist(), stop) for row, ent in zip(new, entropy.T)]


def generate(
    model, tokenizer, prompts: Sequence[str], *, k: int = 1, temperature: float = 0.0, top_p: float = 1.0,
    max_new_tokens: int = 256, batch_size: int = 64, stop: Sequence[str] = STOP_STRINGS, seed: int = 0,
    desc: str | None = None, workers: int = 1,
) -> list[list[Completion]]:
    """k completions per prompt (temperature 0 = greedy); `batch_size` counts sequences, not prompts.

    Batches are fixed by the prompts alone (sorted by length, cut every `batch_size // k`) and batch b
    draws from seed·100003 + b, so `workers` > 1 (forked processes on a CPU, each running whole
    batches) changes only who computes a batch, never what it holds or draws."""
    request = Request(prompts, k, temperature, top_p, max_new_tokens, tuple(stop), seed, desc)
    return generate_many(model, tokenizer, [request], batch_size=batch_size, workers=workers)[0]


def generate_many(model, tokenizer, requests: Sequence[Request], *, batch_size: int = 64,
                  workers: int = 1) -> list[list[list[Completion]]]:
    """`generate` of every request, their batches in one queue (one pool of workers, the costliest batches
    first): each request's batches and draws are the ones its own `generate` call makes."""
    tokenizer.padding_side = "left"
    batches, owners = [], []  # owners[u]: (request, the prompts of batch u by index)
    for r, request in enumerate(requests):
        order = sorted(range(len(request.prompts)), key=lambda i: len(request.prompts[i]))
        per_batch = max(1, batch_size // request.k)
        for b, start in enumerate(range(0, len(order), per_batch)):
            idx = order[start:start + per_batch]
            batches.append(_Batch([request.prompts[i] for i in idx], request.k, request.temperature, request.top_p,
                                  request.max_new_tokens, tuple(request.stop), request.seed * 100_003 + b))
            owners.append((r, idx))
    results: list[list[list[Completion]]] = [[[] for _ in request.prompts] for request in requests]
    descs = [request.desc for request in requests if request.desc is not None]
    bar = tqdm(total=sum(len(request.prompts) for request in requests), desc=", ".join(descs), unit="q",
               disable=not descs, leave=False)
    for u, flat in _run_batches(_Job(model, tokenizer, batches), workers):
        (r, idx), k = owners[u], batches[u].k
        for j, i in enumerate(idx):
            results[r][i] = flat[j * k:(j + 1) * k]
        bar.update(len(idx))
    bar.close()
    return results


@dataclass(frozen=True)
class _Batch:
    """One batch of prompts with its settings and its own seed."""

    prompts: list[str]
    k: int
    temperature: float
    top_p: float
    max_new_tokens: int
    stop: tuple[str, ...]
    seed: int

    def cost(self) -> int:  # rows × longest prompt: what orders the queue
        return self.k * len(self.prompts) * max(map(len, self.prompts))


@dataclass(frozen=True)
class _Job:
    """The batches of one or more `generate` calls on one model."""

    model: object
    tokenizer: object
    batches: list[_Batch]

    def batch(self, u: int) -> tuple[int, list[Completion]]:
        b = self.batches[u]
        return u, _generate_batch(self.model, self.tokenizer, b.prompts, b.k, b.temperature, b.top_p,
                                  b.max_new_tokens, b.stop, b.seed)


_FORKED_JOB: _Job | None = None  # the job a forked worker inherits from its parent


def _forked_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _forked_batch(u: int) -> tuple[int, list[Completion]]:
    return _FORKED_JOB.batch(u)


def _run_batches(job: _Job, workers: int) -> Iterator[tuple[int, list[Completion]]]:
    """(u, completions of batch u) for every batch, in this process or in `workers` forked ones.
    Forked workers share the loaded model copy-on-write and split this process's torch threads."""
    global _FORKED_JOB
    workers = min(workers, len(job.batches))
    if workers <= 1 or job.model.device.type != "cpu":  # a CUDA context does not survive fork
        yield from (job.batch(u) for u in range(len(job.batches)))
        return
    # The costliest batches first, so the workers end together: the last batch of prompts sorted by length
    # is often a few prompts, and one worker would wait for the other's long batch.
    order = sorted(range(len(job.batches)), key=lambda u: -job.batches[u].cost())
    import multiprocessing

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its thread pool does not survive fork either
    threads = max(1, torch.get_num_threads() // workers)
    _FORKED_JOB = job
    try:
        with multiprocessing.get_context("fork").Pool(workers, _forked_worker, (threads,)) as pool:
            yield from pool.imap_unordered(_forked_batch, order)
    finally:
        _FORKED_JOB = None


def cpu_workers(setting: int, device: str) -> int:
    """Generation processes: `setting`, or with 0 one per CPU core on a CPU and 1 on a GPU."""
    if setting:
        return setting
    return 1 if device.startswith("cuda") else max(1, len(os.sched_getaffinity(0)))


class HFEngine:
    """A loaded (model, tokenizer) as an engine; `close` drops the model and returns its GPU memory.
    On a CPU, `workers` forked processes generate whole batches side by side (`generate`)."""

    def __init__(self, model, tokenizer, *, batch_size: int = 64, workers: int = 1):
        self.model, self.tokenizer, self.batch_size, self.workers = model, tokenizer, batch_size, workers

    def generate(self, prompts: Sequence[str], *, k: int, temperature: float, top_p: float = 1.0,
                 max_new_tokens: int, stop: Sequence[str], seed: int, desc: str | None = None) -> list[list[Completion]]:
        return generate(self.model, self.tokenizer, prompts, k=k, temperature=temperature, top_p=top_p,
                        max_new_tokens=max_new_tokens, batch_size=self.batch_size, stop=stop, seed=seed, desc=desc,
                        workers=self.workers)

    def generate_many(self, requests: Sequence[Request]) -> list[list[list[Completion]]]:
        return generate_many(self.model, self.tokenizer, requests, batch_size=self.batch_size, workers=self.workers)

    def record(self, *, k: int, temperature: float, top_p: float, max_new_tokens: int, stop: Sequence[str]) -> dict:
        settings = generation_settings(self.tokenizer, k=k, temperature=temperature, top_p=top_p,
                                       max_new_tokens=max_new_tokens, stop=stop)
        return {"backend": "hf"} | effective_settings(self.model, settings)

    def close(self) -> None:
        on_gpu = self.model is not None and self.model.device.type == "cuda"
        self.model = None
        if on_gpu:
            torch.cuda.empty_cache()
