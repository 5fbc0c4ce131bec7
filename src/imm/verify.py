"""Answer extraction and checking: the single definition of "correct" (METHOD.md §2).

The loop's training filter and every evaluation call `check`, so what is trained on and what is
reported can never disagree. Metric names follow lm-evaluation-harness: `strict-match` reads the
number after the last "The answer is" (or "#### "); `flexible-extract` reads the last number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

STRICT = "strict-match"
FLEXIBLE = "flexible-extract"
METRICS = (STRICT, FLEXIBLE)

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\$?\s?\.\d+"
_STRICT_RE = re.compile(rf"(?:The answer is|####)\s*:?\s*({_NUMBER})", re.IGNORECASE)
_ANY_NUMBER_RE = re.compile(_NUMBER)
# One arithmetic step as the built-in world and GSM8K solutions write it: "12 + 7 = 19".
_STEP_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/x×÷])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Verdict:
    extracted: str | None
    correct: bool


def normalize_number(text: str) -> Decimal | None:
    """'$1,200.50' -> Decimal('1200.5'); None when `text` is not a number."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def extract_answer(completion: str, metric: str = STRICT) -> str | None:
    """The final answer as written in `completion`, or None when there is none."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    pattern = _STRICT_RE if metric == STRICT else _ANY_NUMBER_RE
    found = pattern.findall(completion)
    return found[-1].strip() if found else None


def answers_match(predicted: str | None, gold: str, kind: str = "number") -> bool:
    if predicted is None:
        return False
    if kind == "number":
        p, g = normalize_number(predicted), normalize_number(gold)
        return p is not None and g is not None and p == g
    return predicted.strip() == gold.strip()


def check(completion: str, gold: str, kind: str = "number", metric: str = STRICT) -> Verdict:
    extracted = extract_answer(completion, metric)
    return Verdict(extracted=extracted, correct=answers_match(extracted, gold, kind))


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
