"""Where commands write: one rule for every output folder, and the one place that deletes.

A command that writes a folder (`imm merge OUT`, `imm eval --out`, `imm analyze --out`, `imm world
build --out`, the checkpoints and tables of a run) writes it whole into a temporary sibling, then
renames it into place. What already stands at the target decides whether it may:

    nothing, or an empty folder                  write it
    a folder imm wrote for the same kind         replace it, only when asked (--overwrite)
    anything else                                refuse, even when asked: a user's folder, a folder
                                                 imm wrote for another kind or that holds files imm
                                                 did not write, a file, a symbolic link, an input

A folder imm wrote carries `imm_output.json`: its kind and every file written. Nothing is removed
unless `remove_written` finds it tool-made: a temporary of ours (`.NAME.tmp-*`, `.NAME.old-*`), a
folder whose marker lists all it holds, or a run folder (its marker of kind `run`) that holds only the
run layout's entries. A file imm writes for a command (`imm score --out`, `imm report --markdown`)
carries its own mark in its first line, and only such a file is replaced (`check_output_file`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator

from imm.errors import UserError

MARKER = "imm_output.json"
RUN_KIND = "run"  # the kind in the marker of a run folder (`imm run`), written before anything else in it
_TEMPORARY = re.compile(r"\..+\.(tmp|old)-[^/]*")


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: the OS offers no plain getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_sibling(path: Path, tag: str = "tmp") -> Path:
    """A new empty folder `.NAME.<tag>-XXXX` beside `path` (tag: tmp for work, old for a replaced output),
    with the permissions the umask gives a new folder (mkdtemp alone makes it 0700)."""
    with plain_write_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.{tag}-", dir=path.parent))
        os.chmod(folder, 0o777 & ~current_umask())
        return folder


def is_temporary(path: Path) -> bool:
    return bool(_TEMPORARY.fullmatch(Path(path).name))


def written_files(folder: Path) -> list[str]:
    """Every file below `folder` (relative, '/'-separated, sorted), the marker left out."""
    found = [p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if not p.is_dir()]
    return sorted(name for name in found if name != MARKER)


def read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), list) else None


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` is marked as a run folder (`imm run` writes the mark before anything else)."""
    return (read_marker(folder) or {}).get("kind") == RUN_KIND


def mark_run_folder(folder: Path) -> None:
    """The run's mark: from now on `imm run` may resume, and `--restart` delete, this folder."""
    if not is_run_folder(folder):
        atomic_write_json(Path(folder) / MARKER, {"kind": RUN_KIND, "files": []})


def _foreign_files(folder: Path, marker: dict) -> list[str]:
    return [name for name in written_files(folder) if name not in set(marker["files"])]


# --- a full disk or a folder that cannot be written: one line, not a traceback -------------------

_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR)  # ENOTDIR: a file on the path


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def write_error(err: BaseException, folder: Path, needed: int | None = None) -> UserError | None:
    """The one line for a write into `folder` that failed because its disk is full (naming the space
    needed) or the folder cannot be written; None for any other error. safetensors reports a full
    disk as its own error type, whose message carries the OS's words."""
    code = getattr(err, "errno", None)
    if code in _FULL or "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
        existing = next((p for p in (Path(folder), *Path(folder).parents) if p.exists()), Path("."))
        free = shutil.disk_usage(existing).free
        need = f"about {_megabytes(needed)} needed" if needed else "more needed"
        return UserError(f"no space left on the disk of {folder} ({_megabytes(free)} free, {need}); free space "
                         f"and re-run the same command: finished stages are kept")
    if code in _DENIED:
        return UserError(f"cannot write into {folder}: {os.strerror(code)}; choose a folder you can write to")
    return None


@contextmanager
def plain_write_errors(folder: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk or an unwritable `folder` met inside the block into write_error's one line."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only the write errors above are translated, the rest re-raised
        line = write_error(err, folder, needed)
        if line is None:
            raise
        raise line from None


# --- the one place that deletes --------------------------------------------------------------

SCRATCH_PREFIX = "imm-"  # scratch files in the system's temporary folder (tempfile, prefix="imm-...")


def remove_scratch_file(path: str | Path) -> None:
    """Delete a scratch file imm made in the system's temporary folder (e.g. a child process's log);
    any other path raises."""
    path = Path(path)
    if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith(SCRATCH_PREFIX) or path.is_dir():
        raise UserError(f"refusing to delete {path}: it is not a scratch file of imm in {tempfile.gettempdir()}")
    path.unlink(missing_ok=True)


def remove_written(path: Path, *, run_entries: Collection[str] | None = None) -> None:
    """Delete `path` if, and only if, imm made it; anything else is a bug, refused loudly.

    imm made it when it is a temporary of ours, a folder whose marker lists every file in it, or
    (with `run_entries`, the run layout's top-level names) a marked run folder holding nothing else."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not (is_temporary(path) or _owned_folder(path, run_entries)):
        raise UserError(f"refusing to delete {path}: imm did not write it; move it away yourself if you mean to")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _owned_folder(path: Path, run_entries: Collection[str] | None) -> bool:
    if not path.is_dir():
        return False
    if run_entries is not None:
        names = {p.name for p in path.iterdir() if not is_temporary(p)}
        return is_run_folder(path) and names <= set(run_entries)
    marker = read_marker(path)
    return marker is not None and not _foreign_files(path, marker)


# --- output folders ----------------------------------------------------------------------------

def _overlap(path: Path, inputs: Iterable[str | Path]) -> Path | None:
    """The first input that is `path`, lies inside it, or holds it."""
    target = path.resolve()
    for item in inputs:
        if item is None or not Path(item).exists():
            continue  # a hub id or a name such as 'builtin' is not a folder on this disk
        source = Path(item).resolve()
        if target == source or source in target.parents or target in source.parents:
            return Path(item)
    return None


def check_output_dir(path: Path, kind: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
                     flag: str = "--overwrite") -> None:
    """Refuse, with one line naming the folder and the fix, an output folder imm may not write."""
    path = Path(path)
    fresh = "give a new folder path"
    if path.is_symlink():
        raise UserError(f"output {path} is a symbolic link; imm writes only folders it creates: {fresh}")
    if (source := _overlap(path, inputs)) is not None:
        raise UserError(f"output {path} overlaps the input {source}; write the output to a new folder")
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"output {path} is a file, not a folder; {fresh}")
    if not any(path.iterdir()):
        return
    marker = read_marker(path)
    if marker is None:
        raise UserError(f"output {path} exists and was not written by imm (no {MARKER}); imm never replaces "
                        f"a folder it did not write: {fresh}")
    if marker.get("kind") != kind:
        raise UserError(f"output {path} holds an imm {marker.get('kind')} output, not a {kind} output; {fresh}")
    if foreign := _foreign_files(path, marker):
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"output {path} holds files imm did not write ({shown}); move them away or {fresh}")
    if not overwrite:
        raise UserError(f"output {path} already holds an imm {kind} output; pass {flag} to replace it, or {fresh}")


@contextmanager
def output_dir(path: Path, kind: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
               flag: str = "--overwrite", needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes `path` in one rename, with its marker.

    The target is checked before the work and again before the rename. On any error the temporary
    folder is removed and `path` is left as it was; a full disk is one line naming the folder and
    the space `needed` (bytes, when the caller knows it)."""
    path, inputs = Path(path), tuple(inputs)
    check_output_dir(path, kind, overwrite=overwrite, inputs=inputs, flag=flag)
    tmp = temporary_sibling(path)
    try:
        with plain_write_errors(path.parent, needed):
            yield tmp
            atomic_write_json(tmp / MARKER, {"kind": kind, "files": written_files(tmp)})
        check_output_dir(path, kind, overwrite=overwrite, inputs=inputs, flag=flag)
        _move_into_place(tmp, path)
    except BaseException:
        remove_written(tmp)
        raise


def _move_into_place(tmp: Path, path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()  # an empty folder holds nothing to lose
    if not path.exists():
        os.rename(tmp, path)
        return
    old = temporary_sibling(path, "old")  # checked: an imm output of this kind, replacing it was asked for
    os.replace(path, old)
    os.replace(tmp, path)
    remove_written(old)


def check_output_file(path: Path, written_by_imm: Callable[[Path], bool], *, overwrite: bool = False,
                      flag: str = "--overwrite") -> None:
    """An output file is written new; an existing one is replaced only when imm wrote it (`written_by_imm`
    finds its marker) and it was asked for; never a folder, a link or a file of the user's."""
    path = Path(path)
    if path.is_symlink() or path.is_dir():
        raise UserError(f"output {path} is a {'symbolic link' if path.is_symlink() else 'folder'}; give a new file path")
    if not path.exists():
        return
    if not written_by_imm(path):
        raise UserError(f"output {path} exists and imm did not write it; imm never replaces a file it did not write: "
                        f"give a new file path")
    if not overwrite:
        raise UserError(f"output {path} already holds an earlier imm output; pass {flag} to replace it, or give a new file path")


def first_line(path: Path, limit: int = 4096) -> str:
    """The first line of a file (at most `limit` bytes), '' when it cannot be read: for output markers."""
    try:
        with open(path, "rb") as f:
            return f.readline(limit).decode("utf-8", "replace").rstrip("\r\n")
    except OSError:
        return ""


# --- atomic files ------------------------------------------------------------------------------

def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename, so readers never see half a file."""
    path, needed = Path(path), len(text.encode())
    with plain_write_errors(path.parent, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # as open() would make it (mkstemp alone makes it 0600)
        with plain_write_errors(path.parent, needed), os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        remove_written(Path(tmp))
        raise


def _jsonable(row: Any) -> Any:
    return asdict(row) if is_dataclass(row) else row


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(_jsonable(r), ensure_ascii=False) + "\n" for r in rows))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n")
