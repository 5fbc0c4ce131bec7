"""Hugging Face checkpoint folders, read and written one tensor at a time.

The safetensors format is an 8-byte little-endian header length, a JSON header mapping each
tensor name to {dtype, shape, data_offsets}, then the raw bytes. Reading headers is enough to
validate a merge; tensors are then read with plain `readinto` into fresh buffers (no mmap, so
pages of the inputs never accumulate in our resident memory), and written into a shard whose
header is laid out in advance from the known output shapes.
"""

from __future__ import annotations

import json
import shutil
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
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
    "chat_template.jinja", "chat_template.json",
)
INDEX_NAME = "model.safetensors.index.json"


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
        tensors: dict[str, TensorEntry] = {}
        for shard in _shard_files(path):
            tensors.update(read_header(shard))
        return cls(path, json.loads(config_path.read_text()), tensors)

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


def _shard_files(path: Path) -> list[Path]:
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
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{file} has a corrupt safetensors header; re-save the checkpoint") from None
    base = 8 + length
    return {
        name: TensorEntry(name, file, meta["dtype"], tuple(meta["shape"]),
                          base + meta["data_offsets"][0], base + meta["data_offsets"][1])
        for name, meta in header.items()
        if name != "__metadata__"
    }


class TensorReader:
    """Reads whole tensors or ranges of their flattened entries, keeping each file open once."""

    def __init__(self) -> None:
        self._files: dict[Path, BinaryIO] = {}

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc) -> None:
        for f in self._files.values():
            f.close()

    def read(self, entry: TensorEntry, first: int = 0, stop: int | None = None) -> torch.Tensor:
        """Entries [first, stop) of the flattened tensor (all of it by default), stored dtype, CPU.
        The whole tensor comes back in its shape, a range as a flat tensor."""
        dtype = DTYPES[entry.dtype]
        total = (entry.end - entry.start) // dtype.itemsize
        whole = first == 0 and stop is None
        stop = total if stop is None else stop
        buffer = torch.empty((stop - first) * dtype.itemsize, dtype=torch.uint8)
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


def read_tensor(entry: TensorEntry) -> torch.Tensor:
    """Read one whole tensor into a fresh CPU buffer, in its stored dtype."""
    with TensorReader() as reader:
        return reader.read(entry)


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


def copy_side_files(source: Path, folder: Path, names: Iterable[str]) -> list[str]:
    copied = []
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
            copied.append(name)
    return copied
