"""Run-folder layout and atomic writes: a stage is done exactly when its output exists.

    runs/<name>/
      config.yaml                       resolved config, written before any work
      summary.csv                       arm,iteration,model,task,domain,metric,value,n
      timings.jsonl                     wall time of every stage that ran (a log)
      iter_0/eval/generator.json        θ0's evaluation, shared by every arm
      analysis_cache/                   layer importance of θ0, computed once
      arms/<arm>/iter_<t>/
        samples.jsonl                   every sampled completion, with its verdict
        dataset.jsonl                   the verified, filtered training set D_t (+ dataset_stats.json)
        finetuned/                      F_t  (Hugging Face checkpoint; + finetune_stats.json beside it)
        merged/                         θ_t  (IMM arms only)
        eval/<model>.json               accuracy and diversity of one model (+ <model>.samples.jsonl)
        analysis/                       layer tables (imm analyze)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


def _tmp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(row: Any) -> Any:
    return asdict(row) if is_dataclass(row) else row


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(json.dumps(_jsonable(r), ensure_ascii=False) + "\n" for r in rows))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    On any error the temporary folder is removed and `path` is left as it was."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def iter_dir(run_dir: Path, arm: str, iteration: int) -> Path:
    return Path(run_dir) / "arms" / arm / f"iter_{iteration}"
