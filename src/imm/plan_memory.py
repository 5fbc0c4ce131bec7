"""What a stage of the loop holds in memory, from the model's shape and the run's settings (`imm plan`).

Every figure is a sum of named parts, each a count of numbers times their bytes:

    weights      P parameters in the stage's dtype (fine-tuning always trains a float32 copy: imm.finetune)
    gradients    one number per trained parameter (all P, or LoRA's factors), float32
    optimizer    AdamW's two moments per trained parameter, float32, and the step's temporaries (torch's
                 foreach AdamW computes the update for every tensor at once: about one more copy)
    activations  what backward needs, per token of a micro-batch: the inputs and outputs of each block's
                 norms, projections, rotary embedding and MLP (10·hidden + 2·kv_width + 4·intermediate
                 numbers per block), the attention probabilities (heads × T per token per block), LoRA's
                 dropped-out inputs of its targets, and the logits with their float32 log-softmax and
                 gradient (3 × vocab)
    kv cache     keys and values of every sequence of a generation batch: 2 × blocks × kv_width × (prompt +
                 new tokens), and one block's prompt pass (its projections, MLP and attention scores)
    runtime      on a CPU, the process itself (interpreter, torch, transformers), measured by `runtime_bytes`

Forked generation workers (model.workers > 1 on a CPU) share the weights and add one batch's cache each.
docs/benchmarks.md "imm plan memory against measured peaks" compares these sums with timings.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
FLOAT32 = 4
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only checkpoint's sizes, from config.json (and its safetensors headers when local)."""

    parameters: int
    blocks: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    stored_dtype: str  # the checkpoint's own dtype (config.json `dtype` / `torch_dtype`)

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


def _text_config(config: dict) -> dict:
    return config.get("text_config", config)


def shape_from_config(config: dict, parameters: int | None = None) -> ModelShape:
    """Sizes from a Llama-style config.json; `parameters` counted from the weights when known, else from the
    sizes (embeddings, 4 attention and 3 MLP projections per block, the head unless tied)."""
    c = _text_config(config)
    hidden, blocks, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads = c.get("num_attention_heads", 1)
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or hidden // heads
    intermediate = c.get("intermediate_size") or 4 * hidden
    if parameters is None:
        per_block = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * intermediate
        head = 0 if c.get("tie_word_embeddings", config.get("tie_word_embeddings", True)) else vocab * hidden
        parameters = vocab * hidden + blocks * per_block + head
    dtype = str(c.get("dtype") or c.get("torch_dtype") or config.get("torch_dtype") or "float32")
    return ModelShape(parameters, blocks, hidden, intermediate, heads, kv_heads, head_dim, vocab, dtype)


def read_shape(folder: Path) -> ModelShape:
    """The shape of a local checkpoint folder: sizes from config.json, the parameter count from the headers."""
    from imm.tensor_files import tensor_table

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    count = 0
    for entry in tensor_table(Path(folder)).values():
        size = 1
        for n in entry.shape:
            size *= n
        count += size
    return shape_from_config(config, count)


def lora_parameters(shape: ModelShape, rank: int, targets: tuple[str, ...]) -> int:
    """LoRA's trained numbers: rank × (inputs + outputs) of each targeted projection of every block."""
    h, kv, inter, q = shape.hidden, shape.kv_width, shape.intermediate, shape.heads * shape.head_dim
    sizes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
             "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    return shape.blocks * sum(rank * sum(sizes[t]) for t in targets if t in sizes)


@dataclass(frozen=True)
class Memory:
    """One stage's memory, by part, in bytes."""

    parts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)

    def describe(self) -> str:
        return ", ".join(f"{name} {n / MIB:,.0f}" for name, n in self.parts if n)


def generation_memory(shape: ModelShape, dtype_bytes: int, *, rows: int, prompt_rows: int, prompt_tokens: int,
                      new_tokens: int, workers: int = 1, runtime: int = 0) -> Memory:
    """A generation batch of `rows` sequences (`prompt_rows` prompts, each prompt's pass run once)."""
    length = prompt_tokens + new_tokens
    cache = 2 * shape.blocks * shape.kv_width * rows * length * dtype_bytes
    per_token = 4 * shape.hidden + 2 * shape.kv_width + 3 * shape.intermediate + shape.heads * prompt_tokens
    prompt_pass = prompt_rows * prompt_tokens * per_token * dtype_bytes
    logits = rows * shape.vocab * FLOAT32 * 3  # the step's scores, their softmax and the entropy's log-softmax
    weights = shape.parameters * dtype_bytes
    return Memory((("weights", weights), ("kv cache", workers * cache), ("prompt pass", workers * prompt_pass),
                   ("logits", workers * logits), ("runtime", runtime)))


def lora_saved(shape: ModelShape, rank: int, targets: tuple[str, ...], dropout: float) -> int:
    """Numbers per token per block that LoRA adds to what backward keeps: each targeted projection's dropped-out
    input (where dropout > 0; peft applies it to a copy) and its rank-wide middle."""
    inputs = {"q_proj": shape.hidden, "k_proj": shape.hidden, "v_proj": shape.hidden, "gate_proj": shape.hidden,
              "up_proj": shape.hidden, "o_proj": shape.heads * shape.head_dim, "down_proj": shape.intermediate}
    return sum((inputs[t] if dropout > 0 else 0) + rank for t in targets if t in inputs)


def training_memory(shape: ModelShape, *, trained: int, batch: int, tokens: int, autocast: bool,
                    checkpointing: bool, runtime: int = 0, lora: int = 0) -> Memory:
    """Fine-tuning a float32 copy on micro-batches of `batch` sequences of `tokens` tokens; `trained` numbers
    get gradients and AdamW moments (all parameters, or LoRA's factors); `lora` more numbers per token per block
    kept for backward (`lora_saved`)."""
    act_bytes = 2 if autocast else FLOAT32
    per_block = 10 * shape.hidden + 2 * shape.kv_width + 4 * shape.intermediate + shape.heads * tokens + lora
    rows = batch * tokens
    blocks = rows * per_block * act_bytes * (1 if checkpointing else shape.blocks)
    if checkpointing:
        blocks += rows * shape.hidden * act_bytes * shape.blocks  # each block's input, kept for the recompute
    logits = rows * shape.vocab * (act_bytes + 2 * FLOAT32)
    casts = shape.parameters * 2 if autocast else 0  # autocast's bfloat16 copies of the weights
    return Memory((("weights", shape.parameters * FLOAT32 + casts), ("gradients", trained * FLOAT32),
                   ("optimizer", 3 * trained * FLOAT32), ("activations", blocks + logits), ("runtime", runtime)))


def merge_memory(shape: ModelShape, runtime: int = 0) -> Memory:
    """The merge streams a tensor at a time through two 32 MiB float64 buffers per checkpoint (imm.merging)."""
    largest = max(shape.vocab, shape.intermediate) * shape.hidden * 8  # float64 working copies of one tensor
    return Memory((("buffers", 4 * 32 * MIB), ("one tensor", 3 * largest), ("runtime", runtime)))


def runtime_bytes() -> int:
    """This process's resident memory now (Linux VmRSS), after importing the libraries `imm run`'s process has
    loaded by its first stages (torch, transformers, peft, accelerate, the answer checker's sympy, the report's
    matplotlib): what a stage's peak in timings.jsonl holds before its model loads. 0 where /proc does not say."""
    import accelerate  # noqa: F401
    import math_verify  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
