"""Checkpoint folders' safetensors files, read and written one tensor at a time.

The one place that knows the file format, for the merge engine and the layer analysis alike: the
dtype table, index files (model.safetensors.index.json), shard headers, streaming reads, and which
decoder block a tensor belongs to (`block_index`).

The safetensors format is an 8-byte little-endian header length, a JSON header mapping each
tensor name to {dtype, shape, data_offsets}, then the raw bytes. Reading headers is enough to
validate a merge or a comparison; tensors are then read with plain `readinto` into fresh buffers
or a caller's scratch buffer (no mmap, so pages of the inputs never accumulate in our resident
memory), and written into a shard whose header is laid out in advance from the known output shapes.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Mapping, Sequence

import torch

from imm.errors import UserError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
INDEX_NAME = "model.safetensors.index.json"

# Attribute names under which models keep their decoder blocks (a ModuleList), and so the word
# before the block index in a tensor name.
BLOCK_CONTAINERS = ("layers", "h", "blocks", "layer")
_BLOCK = re.compile(rf"(?:^|\.)(?:{'|'.join(BLOCK_CONTAINERS)})\.(\d+)\.")


def split_block(name: str) -> tuple[int, str] | None:
    """(block index, the rest of the name) of a tensor inside a decoder block; None outside blocks.

    The rule: the first `CONTAINER.N.` in the name, CONTAINER one of BLOCK_CONTAINERS, standing at
    the start of the name or after a dot, and followed by more name:
        model.layers.3.self_attn.q_proj.weight  -> (3, "self_attn.q_proj.weight")   Llama, Qwen, Mistral
        transformer.h.7.attn.c_attn.bias        -> (7, "attn.c_attn.bias")          GPT-2
        layers.0.w1.weight, blocks.5.ln.weight, encoder.layer.2.out.weight -> blocks 0, 5, 2
    Not in a block: model.embed_tokens.weight, lm_head.weight, model.norm.weight, sublayers.3.w
    (the container is a whole word), model.layers.3 (nothing after the index)."""
    match = _BLOCK.search(name)
    return (int(match.group(1)), name[match.end():]) if match else None


def block_index(name: str) -> int | None:
    """The decoder block a tensor belongs to (split_block's rule), or None for embeddings, head, final norm."""
    found = split_block(name)
    return found[0] if found else None


@dataclass(frozen=True)
class TensorEntry:
    """Where one stored tensor lives: file, dtype, shape and absolute byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder's config.json and the tensor table of its safetensors shards."""

    path: Path
    config: Mapping
    tensors: Mapping[str, TensorEntry]

    @classmethod
    def open(cls, path: Path) -> "Checkpoint":
        path = Path(path)
        config_path = path / "config.json"
        if not config_path.is_file():
            raise UserError(f"{path} has no config.json; point the merge config at a Hugging Face checkpoint folder")
        return cls(path, json.loads(config_path.read_text()), tensor_table(path))

    @property
    def tied_embeddings(self) -> bool:
        """The config's tie_word_embeddings; when absent, tied exactly when no lm_head is stored."""
        if "tie_word_embeddings" in self.config:
            return bool(self.config["tie_word_embeddings"])
        return "lm_head.weight" not in self.tensors

    @property
    def num_layers(self) -> int | None:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if isinstance(self.config.get(key), int):
                return self.config[key]
        return None


def tensor_table(path: Path) -> dict[str, TensorEntry]:
    """Every tensor of a checkpoint folder, from its shards' headers (no tensor data is read)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"checkpoint folder {path} does not exist; pass a Hugging Face checkpoint folder")
    tensors: dict[str, TensorEntry] = {}
    for shard in _shard_files(path):
        tensors.update(read_header(shard))
    return tensors


def _shard_files(path: Path) -> list[Path]:
    """The shards its index file names, or every *.safetensors file when it has none."""
    index = path / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [path / name for name in dict.fromkeys(weight_map.values())]
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"{path} has no *.safetensors files; re-save it with model.save_pretrained(path) (safetensors is the default)"
        )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{path}: {INDEX_NAME} names missing shard(s) {', '.join(missing)}; copy the whole checkpoint folder")
    return files


def read_header(file: Path) -> dict[str, TensorEntry]:
    with open(file, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise UserError(f"{file} is not a safetensors file (too short); re-save the checkpoint")
        (length,) = struct.unpack("<Q", raw)
        try:
            if length > file.stat().st_size - 8:  # garbage: do not allocate what the first bytes claim
                raise ValueError
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{file} has a corrupt safetensors header; re-save the checkpoint") from None
    base = 8 + length
    try:
        entries = {
            name: TensorEntry(name, file, meta["dtype"], tuple(meta["shape"]),
                              base + meta["data_offsets"][0], base + meta["data_offsets"][1])
            for name, meta in header.items()
            if name != "__metadata__"
        }
    except (KeyError, TypeError, IndexError, AttributeError):
        raise UserError(f"{file} has a corrupt safetensors header; re-save the checkpoint") from None
    expected = max((e.end for e in entries.values()), default=base)
    if (size := file.stat().st_size) < expected:  # a copy or download cut short: fail before any tensor is read
        raise UserError(f"{file} is truncated ({size:,} of {expected:,} bytes); re-copy the checkpoint")
    return entries


class TensorReader:
    """Reads whole tensors or ranges of their flattened entries, keeping each file open once."""

    def __init__(self) -> None:
        self._files: dict[Path, BinaryIO] = {}

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        for f in self._files.values():
            f.close()

    def read(self, entry: TensorEntry, first: int = 0, stop: int | None = None,
             scratch: torch.Tensor | None = None) -> torch.Tensor:
        """Entries [first, stop) of the flattened tensor (all of it by default), stored dtype, CPU.
        The whole tensor comes back in its shape, a range as a flat tensor. The bytes land in a fresh
        buffer, or at the start of `scratch` (uint8, large enough), which the result is then a view of."""
        dtype = DTYPES[entry.dtype]
        total = (entry.end - entry.start) // dtype.itemsize
        whole = first == 0 and stop is None
        stop = total if stop is None else stop
        nbytes = (stop - first) * dtype.itemsize
        buffer = torch.empty(nbytes, dtype=torch.uint8) if scratch is None else scratch[:nbytes]
        f = self._files.get(entry.file) or self._files.setdefault(entry.file, open(entry.file, "rb", buffering=0))
        f.seek(entry.start + first * dtype.itemsize)
        view, done = memoryview(buffer.numpy()), 0
        while done < len(view):  # one read() returns at most ~2 GiB on Linux
            got = f.readinto(view[done:])
            if not got:
                raise UserError(f"{entry.file} is truncated at tensor {entry.name}; re-copy the checkpoint")
            done += got
        tensor = buffer.view(dtype)
        return tensor.reshape(entry.shape) if whole else tensor


@dataclass(frozen=True)
class OutputTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * self.dtype.itemsize


def plan_shards(outputs: Sequence[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
    """Greedy split in order: a new shard starts when the next tensor would overflow this one."""
    shards: list[list[OutputTensor]] = [[]]
    size = 0
    for out in outputs:
        if shards[-1] and size + out.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(out)
        size += out.nbytes
    return shards


def _shard_name(i: int, count: int) -> str:
    return "model.safetensors" if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"


def _header_bytes(tensors: Sequence[OutputTensor]) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for out in tensors:
        header[out.name] = {"dtype": DTYPE_NAMES[out.dtype], "shape": list(out.shape),
                            "data_offsets": [offset, offset + out.nbytes]}
        offset += out.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_shards(folder: Path, shards: Sequence[Sequence[OutputTensor]],
                 produce: Callable[[OutputTensor], Iterable[torch.Tensor]]) -> None:
    """Write each shard header, then each tensor's pieces as `produce` yields them (CPU tensors
    of the declared dtype whose entries, in order, make up the tensor)."""
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        name = _shard_name(i, len(shards))
        with open(folder / name, "wb") as f:
            f.write(_header_bytes(shard))
            for out in shard:
                written = 0
                for piece in produce(out):
                    if piece.dtype != out.dtype:
                        raise RuntimeError(f"{out.name}: produced {piece.dtype}, planned {out.dtype}")
                    written += f.write(memoryview(piece.contiguous().reshape(-1).view(torch.uint8).numpy()))
                if written != out.nbytes:
                    raise RuntimeError(f"{out.name}: wrote {written} bytes, planned {out.nbytes}")
                weight_map[out.name] = name
    if len(shards) > 1:
        total = sum(out.nbytes for shard in shards for out in shard)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")

