"""`imm score`: re-judge saved completions with the current answer checker, without a model.

    imm score runs/eval/samples_gsm8k.jsonl --task gsm8k [--metric flexible-extract] [--out FILE]

Each row needs `completion` and the gold answer as `answer` (or `gold`, as `imm eval` writes it).
Every row is written back with `extracted` and `correct` replaced (default output:
`<input stem>.scored.jsonl` beside the input), and the accuracy is printed. Use it after changing
the checker, or to score another harness's outputs with this project's definition of correct.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imm import verify
from imm.errors import UserError
from imm.json_files import read_json_lines
from imm.outputs import atomic_write_jsonl, check_output_file, first_line
from imm.tasks.registry import get_task


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.jsonl", help="rows with `completion` and `answer`")
    parser.add_argument("--task", required=True, metavar="NAME", help="task whose answer kind judges the rows")
    parser.add_argument("--metric", default=verify.STRICT, choices=verify.METRICS)
    parser.add_argument("--out", type=Path, default=None, help="output file (default: <input>.scored.jsonl)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file when an earlier `imm score` wrote it")


def read_scorable(path: Path) -> list[dict]:
    """Rows of `path`, each checked to carry a completion and a gold answer (line number on error)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a .jsonl file of completions")
    rows = []
    for number, row in read_json_lines(path):
        if not isinstance(row, dict) or not isinstance(row.get("completion"), str):
            raise UserError(f"line {number} of {path} has no string `completion`")
        if row.get("answer", row.get("gold")) is None:
            raise UserError(f"line {number} of {path} has no gold `answer` (or `gold`)")
        rows.append(row)
    if not rows:
        raise UserError(f"{path} holds no rows")
    return rows


# The first key of every row imm score writes: the mark that lets --overwrite replace the file.
SCORED_BY = {"scored_by": "imm score"}


def is_scored_file(path: Path) -> bool:
    """Whether `path` starts as a file imm score wrote (its first row opens with SCORED_BY)."""
    return first_line(path).startswith(json.dumps(SCORED_BY, ensure_ascii=False)[:-1])


def score_rows(rows: list[dict], kind: str, metric: str) -> list[dict]:
    """The rows with `extracted` and `correct` set by `verify.check_many` (math judged in parallel)."""
    golds = [str(row.get("answer", row.get("gold"))) for row in rows]
    verdicts = verify.check_many([row["completion"] for row in rows], golds, kind=kind, metric=metric)
    return [{**SCORED_BY, **row, **SCORED_BY, "extracted": v.extracted, "correct": v.correct}
            for row, v in zip(rows, verdicts)]


def main(args: argparse.Namespace) -> int:
    task = get_task(args.task)  # the name fixes the answer kind; no data is read
    rows = read_scorable(args.file)
    out = args.out or args.file.with_name(args.file.name.removesuffix(".jsonl") + ".scored.jsonl")
    if out.resolve() == args.file.resolve():
        raise UserError(f"--out {out} is the input file; choose another path")
    check_output_file(out, is_scored_file, overwrite=args.overwrite)
    scored = score_rows(rows, task.answer_kind, args.metric)
    atomic_write_jsonl(out, scored)
    correct = sum(row["correct"] for row in scored)
    print(f"{task.name} {args.metric}: {correct / len(scored):.4f} ({correct}/{len(scored)}) -> {out}")
    return 0
