"""Answer extraction and checking: the single definition of "correct" (docs/method.md §2).

The loop's training filter and every evaluation call `check` / `check_many`, so what is trained on
and what is reported can never disagree. Metric names follow lm-evaluation-harness: `strict-match`
reads the answer after the last "The answer is" (or "#### ", or the last \\boxed{} for math);
`flexible-extract` falls back to the last number (see `imm.verify.extraction` for every kind).

Answer kinds and how they are compared (README "The answer checker" has the contract with examples):
    number  exact value after removing commas, '$', '\\$', a unit and trailing zeros: in-process, fast;
            a gold written with >= 4 decimals is a rounding (MAWPS '3.33333' accepts 10/3)
    choice  the option letter, case-insensitive: in-process
    math    one LaTeX spelling (`imm.verify.latex`); prose, lists, interval brackets and numbers are
            decided in-process, exactly; the rest by symbolic equivalence through math-verify in
            worker processes, decimals made exact fractions first, with a per-answer timeout
    math-approx  as math, but numbers (measured quantities: '2.19e6') equal within a relative 1e-4
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from imm.verify import latex
from imm.verify.extraction import FLEXIBLE, KINDS, METRICS, REL_TOL, STRICT, extract, last_boxed
from imm.verify.numeric import NUMBER, number_text, numbers_equal, parse_number
from imm.verify.symbolic import SymbolicJudge, default_judge

__all__ = [
    "STRICT", "FLEXIBLE", "METRICS", "KINDS", "Verdict", "check", "check_many", "extract", "matches_many",
    "steps_correct", "parse_number", "number_text", "last_boxed", "answer_key", "SymbolicJudge", "NUMBER",
]

# One arithmetic step as the built-in world and GSM8K solutions write it: "12 + 7 = 19". Operands
# start at a number boundary and have at most 40 digits, so a hostile run of digits scans in linear time.
_OPERAND = r"(?<![\d.])(-?\d{1,40}(?:\.\d{1,40})?)(?!\d|\.\d)"
_STEP_RE = re.compile(rf"{_OPERAND}\s*([-+*/x×÷])\s*{_OPERAND}\s*=\s*{_OPERAND}")


@dataclass(frozen=True)
class Verdict:
    extracted: str | None
    correct: bool


def answer_key(answer: str | None, kind: str = "number") -> str | None:
    """A canonical form for counting and voting: equal keys mean surely-equal answers."""
    if answer is None:
        return None
    if kind == "choice":
        return answer.strip().strip("()").upper()
    value = parse_number(answer)
    if value is not None:
        return str(value)
    return latex.compact(latex.normal_form(answer)) if kind in REL_TOL else answer.strip()


def _fast_match(predicted: str, gold: str, kind: str) -> bool | latex.Pair | list[latex.Pair]:
    """True/False when decided in-process; else the (predicted, gold) pair, or pairs of entries, for math-verify."""
    if kind == "number":
        return numbers_equal(predicted, gold)
    if kind == "choice":
        return answer_key(predicted, kind) == answer_key(gold, kind)
    if kind not in REL_TOL:
        raise ValueError(f"unknown answer kind {kind!r}; choose one of {', '.join(KINDS)}")
    return latex.decide(predicted, gold, REL_TOL[kind])


def matches_many(
    pairs: Sequence[tuple[str | None, str]], kind: str = "number", judge: SymbolicJudge | None = None
) -> list[bool]:
    """[predicted matches gold] for each pair; undecided math pairs go to the worker pool together (a matrix or a
    tuple may leave several entries undecided: it matches when every one is equivalent)."""
    decided = [False if p is None else _fast_match(p, g, kind) for p, g in pairs]
    asked = [(i, pair) for i, d in enumerate(decided) if not isinstance(d, bool)
             for pair in (d if isinstance(d, list) else [d])]
    if asked:
        judged = (judge or default_judge()).equivalent_many([pair for _, pair in asked])
        for i in {i for i, _ in asked}:
            decided[i] = True
        for (i, _), ok in zip(asked, judged):
            decided[i] = decided[i] and ok
    return [bool(d) for d in decided]


def check(completion: str, gold: str, kind: str = "number", metric: str = STRICT) -> Verdict:
    """Is the final answer of `completion` the `gold` answer? The one definition of correct."""
    return check_many([completion], [gold], kind, metric)[0]


def check_many(
    completions: Sequence[str], golds: Sequence[str], kind: str = "number", metric: str = STRICT,
    judge: SymbolicJudge | None = None,
) -> list[Verdict]:
    """`check` for many completions at once: the same verdicts, with math answers judged in parallel."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    extracted = [extract(c, metric, kind) for c in completions]
    correct = matches_many(list(zip(extracted, golds)), kind, judge)
    return [Verdict(e, ok) for e, ok in zip(extracted, correct)]


def steps_correct(completion: str) -> bool:
    """True when every written step `a op b = c` in `completion` is arithmetically right.

    Used by the optional step filter (config `filter.check_steps`): a sample that reaches the gold
    answer through a wrong step is a lucky guess, not a solution worth training on."""
    for a, op, b, c in _STEP_RE.findall(completion):
        x, y, z = Decimal(a), Decimal(b), Decimal(c)
        if op in "/÷":
            if y == 0 or x / y != z:
                return False
        elif {"+": x + y, "-": x - y}.get(op, x * y) != z:
            return False
    return True
