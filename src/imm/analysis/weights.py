"""A checkpoint's tensors, read one bounded chunk at a time from its safetensors files.

Only headers are read up front (names, shapes), so compatibility is checked before any tensor data is
touched, and reading never holds more than one chunk per checkpoint: analysis works on models larger
than RAM. Sharded checkpoints (`model.safetensors.index.json`) and tied embeddings (no `lm_head.weight`
on disk) are handled here, so the rest of the package sees one flat name -> tensor mapping.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open

from imm.errors import UserError

INDEX_FILE = "model.safetensors.index.json"
CHUNK_ELEMENTS = 1 << 22  # elements per read: 32 MiB once widened to float64
# With tied embeddings the head is the embedding matrix and is not saved under its own name.
TIED_ALIASES = {"lm_head.weight": ("model.embed_tokens.weight", "transformer.wte.weight")}

_BLOCK_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.(.+?)(?:\.(?:weight|bias))?$")


class Weights:
    """Names, shapes and files of one checkpoint folder, from the safetensors headers only."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.files = _weight_map(self.folder)  # name -> file
        self._chunk: torch.Tensor | None = None  # the reusable float64 read buffer, made on first read
        self.shapes: dict[str, tuple[int, ...]] = {}
        for file in sorted(set(self.files.values())):
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    self.shapes[name] = tuple(f.get_slice(name).get_shape())

    def resolve(self, name: str) -> str | None:
        """The name under which `name` is stored here (a tied head reads the embedding), or None."""
        if name in self.shapes:
            return name
        return next((a for a in TIED_ALIASES.get(name, ()) if a in self.shapes), None)

    def chunks(self, name: str) -> Iterator[torch.Tensor]:
        """The tensor `name` as flat float64 pieces of at most ~CHUNK_ELEMENTS, in storage order.

        Each piece is a view of this checkpoint's one reusable buffer, valid until the next piece is read:
        a fresh float64 buffer per piece would leave the C heap holding several chunks' worth after use."""
        stored = self.resolve(name)
        shape = self.shapes[stored] or (1,)  # a scalar reads as one row of one element
        row_elements = math.prod(shape[1:])
        rows_per_read = max(1, CHUNK_ELEMENTS // max(row_elements, 1))
        buffer = self._buffer(rows_per_read * row_elements)
        with safe_open(str(self.files[stored]), framework="pt") as f:
            piece = f.get_slice(stored)
            for start in range(0, shape[0], rows_per_read):
                raw = piece[start : start + rows_per_read] if self.shapes[stored] else f.get_tensor(stored)
                out = buffer[: raw.numel()]
                out.copy_(raw.reshape(-1))  # widen to float64 in place
                del raw
                yield out

    def _buffer(self, elements: int) -> torch.Tensor:
        if self._chunk is None or self._chunk.numel() < elements:
            self._chunk = torch.empty(max(elements, CHUNK_ELEMENTS), dtype=torch.float64)
        return self._chunk


def _weight_map(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"checkpoint folder {folder} does not exist; pass a Hugging Face model folder")
    index = folder / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"no *.safetensors weights in {folder}; re-save the model with save_pretrained(safe_serialization=True)"
        )
    mapping: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            mapping.update({name: file for name in f.keys()})
    return mapping


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
    block = _BLOCK_RE.search(name)
    if block:
        return block.group(1), block.group(2)
    stem = re.sub(r"\.(weight|bias)$", "", name)
    if "embed_tokens" in stem or stem.endswith("wte") or stem.endswith("wpe"):
        return "embed", stem.rsplit(".", 1)[-1]
    if stem.startswith("lm_head"):
        return "head", "lm_head"
    if stem.endswith("norm") or stem.endswith("ln_f"):
        return "head", "norm"
    return "other", stem
