"""Walk a GGUF file's header with every length and count checked against the file's size, before the
`gguf` package (which trusts them: a truncated file or a count of 2^63 ends in struct.error or a huge
allocation) reads it. The layout (ggml's docs/gguf.md, versions 2 and 3):

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count   × key: string | value_type u32 | value
    tensor_count × name: string | n_dims u32 | dims u64 × n_dims | type u32 | offset u64

A string is its length (u64) and that many bytes; an array is item_type u32, count u64, the items.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from imm.errors import UserError

# value type -> struct format of a scalar (8: string and 9: array are read by hand)
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_DIMS = 4  # GGML_MAX_DIMS


class _Reader:
    """Reads from a byte buffer, refusing any read past its end."""

    def __init__(self, data, path: Path, sizes: dict[int, tuple[int, int]]):
        self.data, self.path, self.pos, self.sizes = data, path, 0, sizes

    def bad(self, what: str) -> UserError:
        return UserError(f"{self.path} is not a valid GGUF file ({what} at byte {self.pos} of {len(self.data)}); "
                         f"download or convert it again")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise self.bad(f"{what} of {n} bytes runs past the end of the file")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def count(self, what: str, each: int) -> int:
        """A u64 count of items at least `each` bytes long, bounded by what is left of the file."""
        n = self.scalar("<Q", what)
        if n * each > len(self.data) - self.pos:
            raise self.bad(f"{what} {n} needs more bytes than the file holds")
        return n

    def string(self, what: str) -> bytes:
        return self.take(self.count(f"length of {what}", 1), what)

    def value(self, kind: int, what: str, depth: int = 0):
        """The value when a scalar (general.alignment is read back), else None once skipped."""
        if kind in SCALARS:
            return self.scalar(SCALARS[kind], what)
        if kind == STRING:
            self.string(what)
        elif kind == ARRAY and depth == 0:
            item = self.scalar("<I", f"item type of {what}")
            size = struct.calcsize(SCALARS[item]) if item in SCALARS else 8 if item in (STRING, ARRAY) else 1
            for _ in range(self.count(f"length of {what}", size)):
                self.value(item, what, depth + 1)
        else:
            raise self.bad(f"unknown value type {kind} of {what}")
        return None


def check_gguf_header(path: Path) -> None:
    """One line naming the defect when the header of GGUF file `path` is inconsistent with its size."""
    try:  # the gguf package is imported here, not at the top: only imm convert needs it
        from gguf.constants import GGML_QUANT_SIZES
    except ImportError:
        raise UserError("reading GGUF needs the gguf package: pip install gguf") from None
    sizes = {int(kind): block_and_bytes for kind, block_and_bytes in GGML_QUANT_SIZES.items()}  # type -> (elements, bytes)
    with open(path, "rb") as f:
        if Path(path).stat().st_size == 0:
            raise UserError(f"{path} is empty, not a GGUF file; pass a .gguf file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _walk(_Reader(data, Path(path), sizes))


def _walk(r: _Reader) -> None:
    if r.take(4, "magic") != b"GGUF":
        raise r.bad("no GGUF magic")
    if (version := r.scalar("<I", "version")) not in (2, 3):
        raise r.bad(f"version {version}, not 2 or 3")
    tensors = r.count("tensor count", 24)  # name length, n_dims, type, offset: 8 + 4 + 4 + 8 bytes at least
    alignment = 32  # GGUF's default, unless general.alignment says otherwise
    for i in range(r.count("metadata count", 13)):  # key length, value type, one byte of value
        key = r.string(f"key {i}").decode("utf-8", "replace")
        value = r.value(r.scalar("<I", f"type of {key}"), key)
        if key == "general.alignment":
            alignment = value if isinstance(value, int) and 0 < value <= 2**16 else 0
    if not alignment:
        raise r.bad("general.alignment outside 1..65536")
    ends = [_tensor_info(r, i) for i in range(tensors)]
    data_start = -(-r.pos // alignment) * alignment
    if ends and data_start + max(ends) > len(r.data):
        raise r.bad(f"tensor data ends at byte {data_start + max(ends)}, past the end of the file (truncated?)")


def _tensor_info(r: _Reader, i: int) -> int:
    """Read one tensor's description; return where its data ends, relative to the data section."""
    name = r.string(f"tensor {i}'s name").decode("utf-8", "replace")
    if (dims := r.scalar("<I", f"dimensions of {name}")) > MAX_DIMS:
        raise r.bad(f"tensor {name} has {dims} dimensions, more than {MAX_DIMS}")
    shape = struct.unpack(f"<{dims}Q", r.take(8 * dims, f"shape of {name}"))
    kind, offset = r.scalar("<I", f"type of {name}"), r.scalar("<Q", f"offset of {name}")
    if kind not in r.sizes:
        raise r.bad(f"tensor {name} has unknown type {kind}")
    block, size = r.sizes[kind]
    elements = 1
    for n in shape:
        elements *= n
    return offset + -(-elements // block) * size
