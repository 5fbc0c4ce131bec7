"""The merge driver: validate from headers, then stream one tensor at a time into the output.

The driver owns everything but the arithmetic: which files hold which tensor, dtypes (compute in
float32, write the requested dtype), the per-tensor random generator, subtracting and adding back
the base, tied embeddings, shards, and the atomic output folder. Elementwise methods (linear,
task_arithmetic, dare_*, imm) stream pieces of STREAM_CHUNK entries from the files, so their memory
does not grow with the model; the others (ties, breadcrumbs, della, slerp) hold n float32 copies
of one whole tensor at a time, never the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from imm.errors import UserError
from imm.merging import sparsify as sp
from imm.merging.compat import check_compatible
from imm.merging.methods import BaseUse, TensorParams, summarize
from imm.merging.parameters import depth
from imm.merging.spec import MergeSpec
from imm.outputs import output_dir
from imm.tensor_files import DTYPES, Checkpoint, block_index, OutputTensor, TensorEntry, TensorReader, plan_shards, write_shards

DEFAULT_SHARD_BYTES = 5 * 2**30
STREAM_CHUNK = 1 << 20  # entries per streamed piece: 4 MiB per model in float32
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
    "chat_template.jinja", "chat_template.json",
)


@dataclass(frozen=True)
class TensorJob:
    """One output tensor: where its inputs live and its resolved parameters (None: copy the base)."""

    output: OutputTensor
    base: TensorEntry | None  # the base's tensor (base-aware methods)
    inputs: tuple[TensorEntry, ...]  # one per MergeSpec.models entry, then the start's (methods with `start`)
    params: TensorParams | None


@dataclass(frozen=True)
class MergePlan:
    spec: MergeSpec
    reference: Checkpoint  # the base, or the first model when linear runs without a base
    jobs: tuple[TensorJob, ...]


def tensor_seed(seed: int, tensor_name: str, model_index: int = 0) -> int:
    """A 63-bit seed from (seed, tensor name, model index), stable across processes and
    independent of the order in which tensors are merged."""
    digest = hashlib.sha256(f"{seed}\x00{tensor_name}\x00{model_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def tensor_generators(seed: int, tensor_name: str, count: int, device: str = "cpu") -> list[torch.Generator]:
    """One generator per merged model of one tensor (each task vector draws its own mask)."""
    return [torch.Generator(device=device).manual_seed(tensor_seed(seed, tensor_name, i)) for i in range(count)]


def plan_merge(spec: MergeSpec) -> MergePlan:
    """Open every checkpoint's headers, check they can be merged, resolve every parameter."""
    base = Checkpoint.open(spec.base_model) if spec.base_model is not None else None
    models = [Checkpoint.open(m.path) for m in spec.models]
    reference = base or models[0]
    if spec.method_def.start:  # the fine-tunes' common start, one more input (the base itself when unset)
        models.append(Checkpoint.open(spec.start_model) if spec.start_model is not None else reference)
    check_compatible(reference, models)
    # spec.OUTPUT_DTYPES are torch's own names (float32, bfloat16, ...)
    out_dtype = getattr(torch, spec.output_dtype) if spec.output_dtype else None
    num_layers = reference.num_layers or 1
    base_aware = spec.method_def.base is BaseUse.REQUIRED  # linear takes the base as an ordinary input
    jobs = []
    for name in _output_names(reference):
        entry = reference.tensors[name]
        stored = DTYPES[entry.dtype]
        floating = stored.is_floating_point
        dtype = out_dtype if (out_dtype is not None and floating) else stored
        params = (spec.tensor_params(name, depth(name, num_layers), block_index(name), num_layers, tuple(entry.shape))
                  if floating else None)
        output = OutputTensor(name, dtype, entry.shape)
        jobs.append(TensorJob(output, base.tensors[name] if base_aware else None,
                              tuple(m.tensors[name] for m in models), params))
    return MergePlan(spec, reference, tuple(jobs))


def _output_names(reference: Checkpoint) -> list[str]:
    """Tensor names in on-disk order (sequential reads); a tied lm_head is not written twice."""
    entries = sorted(reference.tensors.values(), key=lambda e: (str(e.file), e.start))
    skip = {"lm_head.weight"} if reference.tied_embeddings else set()
    return [e.name for e in entries if e.name not in skip]


def merge_tensor(plan: MergePlan, job: TensorJob, seed: int, device: str = "cpu",
                 reader: TensorReader | None = None, records: dict | None = None) -> Iterator[torch.Tensor]:
    """Merge one tensor; yields its flattened pieces in order (or the whole tensor), on the CPU
    in the output dtype. Elementwise methods are streamed in pieces of STREAM_CHUNK entries read
    straight from the files, so their memory does not grow with the tensor. A method's record of
    the tensor (`Method.record`) goes into `records[name]`."""
    reader = reader or TensorReader()
    method = plan.spec.method_def
    if job.params is None:  # integer buffers and the like: the reference's copy
        yield reader.read(plan.reference.tensors[job.output.name]).to(job.output.dtype)
        return
    generators = tensor_generators(seed, job.output.name, len(job.params.per_model), device)
    numel = math.prod(job.output.shape)
    pieces = sp.chunks(numel, STREAM_CHUNK) if method.elementwise else [None]
    for piece in pieces:
        first, stop = (piece.start, piece.stop) if piece else (0, None)
        if method.task_vectors:
            base = reader.read(job.base, first, stop).to(device=device, dtype=torch.float32)
            deltas = _stack(reader, job.inputs, first, stop, device).sub_(base)  # δᵢ = θᵢ − θ_base, (n, *S)
            if method.record is not None and records is not None:  # a whole-tensor method: one piece
                records[job.output.name] = method.record(deltas, job.params)
            result = method.fn(deltas, job.params, generators).add_(base)
        else:
            entries = ((job.base,) if job.base is not None else ()) + job.inputs
            result = method.fn(_stack(reader, entries, first, stop, device), job.params, generators)
        result = result.to(job.output.dtype)
        if not bool(torch.isfinite(result).all()):  # checked after the cast: float16 overflows to inf
            raise UserError(f"merged tensor {job.output.name} holds NaN or Inf values; check that every input "
                            f"checkpoint is finite (a diverged fine-tune) and that the weights fit {job.output.dtype}")
        yield result.cpu()


def _stack(reader: TensorReader, entries: Sequence[TensorEntry], first: int, stop: int | None,
           device: str) -> torch.Tensor:
    """(n, *piece) float32: each input read in its stored dtype and widened into its slot."""
    first_input = reader.read(entries[0], first, stop)
    stacked = torch.empty((len(entries), *first_input.shape), dtype=torch.float32, device=device)
    stacked[0].copy_(first_input)
    del first_input
    for i, entry in enumerate(entries[1:], start=1):
        stacked[i].copy_(reader.read(entry, first, stop))
    return stacked


def merge(spec: MergeSpec, out_dir: Path, *, seed: int = 0, device: str = "cpu",
          max_shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False,
          progress: Callable[[int, int], None] | None = None) -> Path:
    """Merge `spec` into the checkpoint folder `out_dir`, written atomically (temp folder + rename);
    an existing `out_dir` is replaced only when it is an earlier merge output and `overwrite` is set.

    Everything that can be checked from config.json and safetensors headers is checked before any
    tensor data is read. `progress(done, total)` is called after each tensor."""
    plan = plan_merge(spec)
    shards = plan_shards([job.output for job in plan.jobs], max_shard_bytes)
    by_name = {job.output.name: job for job in plan.jobs}
    records: dict = {}
    done = 0

    def produce(output: OutputTensor) -> Iterator[torch.Tensor]:
        nonlocal done
        yield from merge_tensor(plan, by_name[output.name], seed, device, reader, records)
        done += 1
        if progress:
            progress(done, len(plan.jobs))

    out_dir = Path(out_dir)
    needed = sum(job.output.nbytes for job in plan.jobs)
    with output_dir(out_dir, "merge", overwrite=overwrite, inputs=spec.inputs(), needed=needed) as tmp, \
            TensorReader() as reader:
        write_shards(tmp, shards, produce)
        _write_side_files(plan, tmp, seed)
        if records:
            _write_record(plan, tmp, records)
    return out_dir


RECORD_NAME = "merge_record.json"


def _write_record(plan: MergePlan, folder: Path, records: dict) -> None:
    """What the method measured on each tensor (model_stock: cos and t), and its min / median / max."""
    tensors = {name: dataclasses.asdict(r) for name, r in records.items()}
    record = {"merge_method": plan.spec.method, "summary": summarize(records), "tensors": tensors}
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")


def _write_side_files(plan: MergePlan, folder: Path, seed: int) -> None:
    config = dict(plan.reference.config)
    dtype = plan.spec.output_dtype
    for key in ("torch_dtype", "dtype"):
        if dtype and key in config:
            config[key] = dtype
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _copy_files(plan.reference.path, folder, ["generation_config.json"])
    _copy_files(plan.spec.tokenizer_source or plan.reference.path, folder, TOKENIZER_FILES)
    header = f"# merged by `imm merge` with --seed {seed}\n"
    (folder / "merge_config.yml").write_text(header + plan.spec.to_yaml())


def _copy_files(source: Path, folder: Path, names: Sequence[str]) -> None:
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
