"""Reading JSON and JSON Lines a user hands in: any defect is one line naming the file and the line.

A file that is not UTF-8 names the line and the byte; text that is not JSON names the parser's words;
nesting deeper than Python's recursion limit (about a thousand levels, far beyond any data set) is
refused instead of a RecursionError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from imm.errors import UserError


def parse_json(text: str, where: str) -> Any:
    """`text` as JSON, or one line naming `where` (e.g. 'line 3 of rows.jsonl')."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{where} is not JSON ({err.msg} at column {err.colno}); fix or remove it") from None
    except RecursionError:
        raise UserError(f"{where} nests lists or objects too deeply to be data; fix or remove it") from None


def decode_line(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"line {number} of {path} is not UTF-8 text (byte {raw[err.start]:#04x} at column "
                        f"{err.start + 1}); save the file as UTF-8") from None


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON Lines file."""
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                line = decode_line(raw, path, number)
                if line.strip():
                    yield number, parse_json(line, f"line {number} of {path}")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; pass a readable JSON Lines file") from None


def read_json(path: Path) -> Any:
    """A whole .json file (its line numbers named on an encoding error)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}; pass a readable JSON file") from None
    text = "".join(decode_line(line, path, n) for n, line in enumerate(raw.splitlines(keepends=True), 1))
    return parse_json(text, str(path))
