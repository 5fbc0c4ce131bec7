"""A checkpoint's tensors for the layer analysis, read one bounded chunk at a time.

Only headers are read up front (names, shapes; `imm.tensor_files`, which also reads sharded
checkpoints), so compatibility is checked before any tensor data is touched, and reading never holds
more than one chunk per checkpoint: analysis works on models larger than RAM. Tied embeddings (no
`lm_head.weight` on disk) are resolved here, so the rest of the package sees one flat name -> tensor
mapping.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator

import torch

from imm.errors import UserError
from imm.tensor_files import TensorReader, split_block, tensor_table

CHUNK_ELEMENTS = 1 << 22  # elements per read: 32 MiB once widened to float64
RAW_ELEMENTS = 1 << 18  # elements per file read, in the stored dtype (1 MiB of float32)
# With tied embeddings the head is the embedding matrix and is not saved under its own name.
TIED_ALIASES = {"lm_head.weight": ("model.embed_tokens.weight", "transformer.wte.weight")}


class Weights:
    """Names, shapes and files of one checkpoint folder, from the safetensors headers only."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.tensors = tensor_table(self.folder)
        self.shapes = {name: entry.shape for name, entry in self.tensors.items()}
        self._chunk: torch.Tensor | None = None  # the reusable float64 read buffer, made on first read
        self._raw = torch.empty(RAW_ELEMENTS * 8, dtype=torch.uint8)  # raw bytes of one file read (≤ 8 per entry)

    def resolve(self, name: str) -> str | None:
        """The name under which `name` is stored here (a tied head reads the embedding), or None."""
        if name in self.shapes:
            return name
        return next((a for a in TIED_ALIASES.get(name, ()) if a in self.shapes), None)

    def chunks(self, name: str) -> Iterator[torch.Tensor]:
        """The tensor `name` as flat float64 pieces of whole rows, at most ~CHUNK_ELEMENTS, in storage order.

        Each piece is a view of this checkpoint's one reusable buffer, valid until the next piece is read:
        a fresh float64 buffer per piece would leave the C heap holding several chunks' worth after use."""
        entry = self.tensors[self.resolve(name)]
        shape = entry.shape or (1,)  # a scalar reads as one row of one element
        row_elements = math.prod(shape[1:])
        step = max(1, CHUNK_ELEMENTS // max(row_elements, 1)) * row_elements or 1  # elements per read
        buffer = self._buffer(step)
        total = math.prod(shape)
        with TensorReader() as reader:
            for first in range(0, total, step):
                out = buffer[: min(step, total - first)]
                for at in range(0, out.numel(), RAW_ELEMENTS):  # the stored dtype passes through one small buffer
                    raw = reader.read(entry, first + at, first + min(at + RAW_ELEMENTS, out.numel()), self._raw)
                    out[at : at + raw.numel()].copy_(raw)  # widen to float64 in place
                yield out

    def _buffer(self, elements: int) -> torch.Tensor:
        if self._chunk is None or self._chunk.numel() < elements:
            self._chunk = torch.empty(max(elements, CHUNK_ELEMENTS), dtype=torch.float64)
        return self._chunk


def shared_names(checkpoints: list[Weights]) -> list[str]:
    """Tensor names every checkpoint can supply with one shape; UserError naming the first mismatch."""
    names = sorted(set().union(*(w.shapes for w in checkpoints)))
    for name in names:
        shapes = set()
        for weights in checkpoints:
            stored = weights.resolve(name)
            if stored is None:
                raise UserError(f"tensor {name!r} is missing from {weights.folder}; compare checkpoints of one architecture")
            shapes.add(weights.shapes[stored])
        if len(shapes) > 1:
            raise UserError(f"tensor {name!r} has shapes {sorted(shapes)} across checkpoints; compare one architecture")
    return names


def locate(name: str) -> tuple[str, str]:
    """(layer, module) of a tensor: a decoder block index or `embed`/`head`/`other`, and its module path.

    `model.layers.3.self_attn.q_proj.weight` -> ("3", "self_attn.q_proj"); weight and bias of one
    module share a module; the final norm counts as part of the head (it feeds only the head)."""
    block = split_block(name)
    if block:
        return str(block[0]), _stem(block[1])
    stem = _stem(name)
    if "embed_tokens" in stem or stem.endswith("wte") or stem.endswith("wpe"):
        return "embed", stem.rsplit(".", 1)[-1]
    if stem.startswith("lm_head"):
        return "head", "lm_head"
    if stem.endswith("norm") or stem.endswith("ln_f"):
        return "head", "norm"
    return "other", stem


def _stem(name: str) -> str:
    """The module path of a parameter: its name without a final `.weight` or `.bias`."""
    return re.sub(r"\.(weight|bias)$", "", name)
