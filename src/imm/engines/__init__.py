"""Generation engines: what writes completions for sampling (S_t), evaluation and the analysis probe.

Every stage that generates opens one engine on a checkpoint folder, asks it for completions of a list of
prompts and closes it, so the model lives only as long as the stage:

    with open_engine(path, sampling, model, batch_size=64) as engine:
        groups = engine.generate(prompts, k=4, temperature=0.8, top_p=1.0, max_new_tokens=128,
                                 stop=ask.stop, seed=seed, desc="sample")

`generate_many` takes several such requests at once (an evaluation's greedy answers and its samples), so
the engine can interleave their work; each request gets what its own `generate` call would return.

`sampling.backend` picks the engine: `hf` (Hugging Face `generate` in this process, `imm.engines.hf`)
or `vllm` (vLLM in a child process, `imm.engines.vllm`). Both return the same `Completion` records;
how each defines `mean_entropy` is documented with the engine.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from imm.config import Backend, ModelConfig, SampleConfig
from imm.engines.records import Completion, Request, cut_at_stop
from imm.errors import UserError

__all__ = ["Completion", "Engine", "Request", "check_backend", "cut_at_stop", "open_engine"]


class Engine(Protocol):
    tokenizer: object  # the checkpoint's tokenizer: prompts are built with it (chat templates, worked examples)

    def generate(self, prompts: Sequence[str], *, k: int, temperature: float, top_p: float, max_new_tokens: int,
                 stop: Sequence[str], seed: int, desc: str | None = None) -> list[list[Completion]]:
        """k completions per prompt, in prompt order; temperature 0 is greedy decoding."""

    def generate_many(self, requests: Sequence[Request]) -> list[list[list[Completion]]]:
        """`generate` of each request, in request order, each exactly as its own call would return it (the
        engine may interleave their work: the hf engine's workers take all their batches as one queue)."""

    def record(self, *, k: int, temperature: float, top_p: float, max_new_tokens: int,
               stop: Sequence[str]) -> dict:
        """Every setting that shaped the completions, as written beside S_t (generation.json)."""


def check_backend(backend: str) -> None:
    if backend not in tuple(Backend):
        raise UserError(f"sampling.backend {backend!r} is unknown; pick one of {', '.join(Backend)}")


@contextmanager
def open_engine(path: str | Path, sampling: SampleConfig, model: ModelConfig, *,
                batch_size: int) -> Iterator[Engine]:
    """The engine `sampling.backend` names, on the checkpoint at `path`; closed (its memory returned) on exit.
    `batch_size` counts sequences per generation batch (`sampling.batch_size` or `eval.batch_size`)."""
    check_backend(sampling.backend)
    if sampling.backend == Backend.HF:
        from imm.engines.hf import HFEngine, cpu_workers
        from imm.models import load_model

        loaded, tokenizer = load_model(path, device=model.device, dtype=model.dtype)
        engine = HFEngine(loaded, tokenizer, batch_size=batch_size,
                          workers=cpu_workers(model.workers, str(loaded.device)))
    else:
        from imm.engines.vllm import VLLMEngine

        engine = VLLMEngine(path, sampling, model, batch_size=batch_size)
    try:
        yield engine
    finally:
        engine.close()
