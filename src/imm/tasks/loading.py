"""Reading a data set's rows: from a local file or folder (`NAME=PATH`), else from the Hugging Face hub.

A PATH may be
    a file      .jsonl (one JSON object a line) or .json (a list of objects, or {"data": [...]}); it is
                read for whichever split is asked, so give the file of the split you mean
    a folder    holding `<split>.jsonl` / `<split>.json` (or the task's own file name for that split,
                e.g. `addsub.jsonl` for mawps_addsub), or exactly one .json/.jsonl file
Without a PATH the task's usual hub id is loaded with `datasets` (imported only then). When that
package or the network is missing, the error names the local option instead of a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from imm.errors import UserError
from imm.tasks.base import STOP_STRINGS, Problem, Task

DATA_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub: id, optional config, our split -> hub split."""

    id: str
    config: str | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})


class FileTask(Task):
    """A real data set read from local files or the hub; subclasses say how one row becomes a Problem."""

    hub: HubSource | None = None
    file_names: Mapping[str, str] = {}  # split -> file name inside a folder, beyond <split>.jsonl
    data_format: str = ""  # one line for `imm eval --help`: the fields a local file must have
    stop: Sequence[str] = STOP_STRINGS  # where generation ends for this task's answers

    def __init__(self, path: str | None = None):
        self.path = Path(path).expanduser() if path else None
        if self.path is not None and not self.path.exists():
            raise UserError(f"task {self.name!r}: {self.path} does not exist; pass {self.name}=FILE_OR_FOLDER")
        self._cache: dict[str, list[Problem]] = {}

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem | None:
        """One Problem from one raw row; None drops the row (documented per task)."""
        raise NotImplementedError

    def problems(self, split: str) -> list[Problem]:
        if split not in self._cache:
            rows, origin = self._rows(split)
            self._cache[split] = [p for i, row in enumerate(rows) if (p := self._parse(row, i, split, origin))]
            if not self._cache[split]:
                raise UserError(f"task {self.name!r}: no usable rows in {origin}; expected {self.data_format}")
        return self._cache[split]

    def source(self, split: str) -> str | None:
        """The file `split` is read from, or the hub split; a task given as one file reads it for every split."""
        if self.path is None:
            known = self.hub is not None and split in self.hub.splits
            return f"hub {self.hub.id} {self.hub.config} {self.hub.splits[split]}" if known else None
        try:
            file = self.path if self.path.is_file() else find_split_file(self.name, self.path, split, self.file_names)
        except UserError:
            return None
        return str(file.resolve())

    def _parse(self, row: Any, index: int, split: str, origin: str) -> Problem | None:
        try:
            return self.parse_row(row, index, split)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise UserError(
                f"task {self.name!r}: row {index + 1} of {origin} is malformed ({type(err).__name__}: {err}); "
                f"expected {self.data_format}"
            ) from None

    def _rows(self, split: str) -> tuple[list[Any], str]:
        if self.path is None:
            return hub_rows(self.name, self.hub, split), f"hub data set {self.hub.id}" if self.hub else ""
        file = self.path if self.path.is_file() else find_split_file(self.name, self.path, split, self.file_names)
        return read_rows(file, self.name), str(file)


def find_split_file(task: str, folder: Path, split: str, file_names: Mapping[str, str]) -> Path:
    """The file of `split` inside `folder`: a named file, `<split>.jsonl|json`, or the only data file."""
    names = [file_names[split]] if split in file_names else []
    names += [split + suffix for suffix in DATA_SUFFIXES]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    data_files = sorted(p for p in folder.iterdir() if p.suffix in DATA_SUFFIXES)
    if len(data_files) == 1:
        return data_files[0]
    raise UserError(
        f"task {task!r}: {folder} has no {' or '.join(names)}; pass {task}=FILE for the {split} split"
    )


def read_rows(file: Path, task: str) -> list[Any]:
    """Rows of a .jsonl or .json file, with the line number of the first bad line in the error."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"task {task!r}: cannot read {file}: {err}") from None
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"task {task!r}: {file} is not valid JSON ({err}); expected a list of objects") from None
        data = data.get("data", data) if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise UserError(f"task {task!r}: {file} holds no list of rows; expected [{{...}}, ...] or .jsonl")
        return data
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"task {task!r}: line {number} of {file} is not JSON ({err.msg})") from None
    return rows


def hub_rows(task: str, hub: HubSource | None, split: str) -> list[Any]:
    """Rows of the task's hub data set; a UserError naming `task=PATH` when that cannot work here."""
    if hub is None:
        raise UserError(f"task {task!r} has no Hugging Face copy to load; pass a local file: {task}=PATH")
    if split not in hub.splits:
        raise UserError(f"task {task!r} has no {split!r} split on the hub ({hub.id}); pass {task}=PATH")
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"task {task!r}: no path given and the `datasets` package is not installed to fetch {hub.id}; "
            f"pass a local copy as {task}=PATH (or pip install datasets)"
        ) from None
    try:
        return list(datasets.load_dataset(hub.id, hub.config, split=hub.splits[split]))
    except Exception as err:  # noqa: BLE001 - network, auth and format errors all mean "use a local copy"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"task {task!r}: cannot load {hub.id} from the hub ({first}); pass {task}=PATH") from None


def first_field(row: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of `names` present in `row` (data sets spell fields differently)."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise KeyError(f"none of the fields {', '.join(names)}")


def row_id(task: str, row: Mapping[str, Any], index: int, split: str) -> str:
    for name in ("id", "ID", "idx", "unique_id"):
        if name in row and row[name] is not None:
            return f"{task}-{row[name]}"
    return f"{task}-{split}-{index}"
