"""Answer-checker throughput: the in-process numeric path, the math fast path, and math-verify in
worker processes with the timeout guard on; plus the wall time of hostile answers.

    .venv/bin/python benchmarks/verify.py                     # prints a table
    .venv/bin/python benchmarks/verify.py --append-docs       # and writes its section of docs/benchmarks.md

Data: the offline copies in ../shared/data (GSM8K test + train, MMLU-STEM, Minerva MATH). Each GSM8K
gold solution is checked once as written and once with the answer + 1 (half right, half wrong), which
is what the loop's training filter sees. The math-verify rows send every Minerva gold answer to the
workers against itself (the fast path is skipped), i.e. real MATH answers through the full parser.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from imm import verify
from imm.tasks.registry import get_task
from imm.verify.symbolic import TIMEOUT_S

from _log import write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
QWEN = DATA / "qwen25math_eval"
HOSTILE = ["9^{9^{9^9}}", "\\frac{1}{" * 30 + "2" + "}" * 30, "10^{10^{10}}!", "(x+1)^{100000}-(x-1)^{100000}"]


def _rate(label: str, n: int, fn) -> tuple[str, int, float, float]:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return label, n, seconds, n / seconds


def numeric_rows() -> list[tuple]:
    problems = get_task(f"gsm8k={DATA / 'gsm8k'}").problems("train") + get_task(f"gsm8k={DATA / 'gsm8k'}").problems("test")
    texts = [p.solution for p in problems] + [f"So it is {p.answer}. The answer is {p.answer}1." for p in problems]
    golds = [p.answer for p in problems] * 2
    return [
        _rate("number, check() one by one (loop filter)", len(texts),
              lambda: [verify.check(t, g) for t, g in zip(texts, golds)]),
        _rate("number, check_many strict-match", len(texts), lambda: verify.check_many(texts, golds)),
        _rate("number, check_many flexible-extract", len(texts),
              lambda: verify.check_many(texts, golds, metric=verify.FLEXIBLE)),
    ]


def choice_and_fast_math_rows() -> list[tuple]:
    mmlu = get_task(f"mmlu_stem={QWEN / 'mmlu_stem'}").problems("test")
    minerva = get_task(f"minerva_math={QWEN / 'minerva_math'}").problems("test")
    return [
        _rate("choice (MMLU-STEM), check_many", len(mmlu),
              lambda: verify.check_many([p.solution for p in mmlu], [p.answer for p in mmlu], "choice")),
        _rate("math fast path (Minerva gold solutions)", len(minerva),
              lambda: verify.check_many([p.solution for p in minerva], [p.answer for p in minerva], "math")),
    ]


def math_verify_rows(workers: int) -> tuple[list[tuple], dict]:
    golds = [p.answer for p in get_task(f"minerva_math={QWEN / 'minerva_math'}").problems("test")]
    start = time.perf_counter()
    judge = verify.SymbolicJudge(workers=workers, timeout_s=TIMEOUT_S)
    judge.equivalent_many([("1", "1")] * workers)  # wait until every worker has imported math-verify
    startup = time.perf_counter() - start
    rows = [_rate(f"math-verify, {workers} workers, timeout {TIMEOUT_S:g} s", len(golds),
                  lambda: judge.equivalent_many([(g, g) for g in golds]))]
    real_timeouts = judge.timeouts
    start = time.perf_counter()
    verdicts = judge.equivalent_many([(h, "3") for h in HOSTILE])
    hostile = {"seconds": time.perf_counter() - start, "all_wrong": not any(verdicts),
               "killed": judge.timeouts - real_timeouts, "real_timeouts": real_timeouts, "startup": startup}
    judge.close()
    return rows, hostile


def in_process_math_verify_row() -> tuple:
    """The same answers through math-verify in this process (signal timeouts only): the IPC overhead."""
    from math_verify import parse, verify as mv_verify

    golds = [p.answer for p in get_task(f"minerva_math={QWEN / 'minerva_math'}").problems("test")]

    def run():
        for g in golds:
            a = parse(f"${g}$", parsing_timeout=int(TIMEOUT_S))
            mv_verify(a, parse(f"${g}$", parsing_timeout=int(TIMEOUT_S)), timeout_seconds=int(TIMEOUT_S))

    return _rate("math-verify in-process, 1 thread (unguarded)", len(golds), run)


def table(rows: list[tuple]) -> str:
    lines = ["| path | answers | seconds | answers/s |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {n} | {s:.2f} | {r:,.0f} |" for label, n, s, r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"offline data not found at {DATA}", file=sys.stderr)
        return 1
    rows = numeric_rows() + choice_and_fast_math_rows()
    mv_rows, hostile = math_verify_rows(args.workers)
    rows += mv_rows + [in_process_math_verify_row()]
    text = table(rows) + (
        f"\n\nHostile answers ({len(HOSTILE)}: `9^{{9^{{9^9}}}}`, 30 nested fractions, `10^{{10^{{10}}}}!`, "
        f"`(x+1)^{{100000}}-(x-1)^{{100000}}`) against gold 3: all judged wrong = {hostile['all_wrong']}, "
        f"{hostile['killed']} workers killed at the timeout, {hostile['seconds']:.1f} s wall in all. "
        f"Worker pool start-up {hostile['startup']:.1f} s; real answers that hit the timeout: {hostile['real_timeouts']}."
    )
    print(text)
    if args.append_docs:
        _append_docs(text)
    return 0


def _append_docs(text: str) -> None:
    write_section("Answer checker throughput", [text], command=".venv/bin/python benchmarks/verify.py --append-docs")


if __name__ == "__main__":
    sys.exit(main())
