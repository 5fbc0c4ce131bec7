"""Math answers (kind "math") before any symbolic work: one spelling, one shape, exact numbers.

`normal_form` rewrites what never changes a value (spacing, \\left/\\right, \\dfrac, '$', degree
marks, \\text{} wrappers, unicode √ π × · −, `sqrt(2)`) into one LaTeX spelling, so `3√5` and
`3\\sqrt{5}` are the same text and `6√2` can no longer be read as 6. `shape` says what kind of answer
a text is: prose (a refusal, a hedge, a sentence), a list ('70,110', '9, 18, 27, ...'), an interval
or tuple with its bracket signature ('(-36,104]' -> '(]'), or one expression. `exact_decimals` writes
every decimal as a fraction before math-verify sees it, so an approximation (8.062258 for
\\sqrt{65}, 6.283185 for 2\\pi) is compared exactly instead of after rounding to 6 places.
Matrices (any `*matrix` or `array` environment) get one layout, `\\begin{pmatrix}a&b\\\\c&d\\end{pmatrix}`,
and are compared entry by entry, as are tuples and intervals: every entry must be equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from imm.verify.numeric import CLAIM_WORDS, parse_number, values_equal

_UNICODE = {"√": "\\sqrt ", "π": "\\pi", "∞": "\\infty", "×": "\\times", "·": "\\cdot", "−": "-", "≤": "\\le ",
            "≥": "\\ge ", "∪": "\\cup ", "²": "^2", "³": "^3", "°": "", "…": "\\ldots "}
_REWRITES = [
    (re.compile(r"(?<=\d)(?:\{,\}|,\\!)(?=\d{3})"), ""),  # '10{,}000', '10,\!000': thousands commas
    (re.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\\\$|\$"), " "),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\^\s*\{?\\circ\}?|\\circ|\\%|%"), " "),  # degrees and percent: '30^\circ' is 30
    (re.compile(r"\\cdots|\.\.\."), r"\\ldots "),
    (re.compile(r"\\(?:text|textbf|mbox|mathrm|textnormal|operatorname)\s*\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"(?<![\\A-Za-z])sqrt\s*\(([^()]{1,200})\)"), r"\\sqrt{\1}"),  # sqrt(2) -> \sqrt{2}
    (re.compile(r"\\sqrt\s*\(([^()]{1,200})\)"), r"\\sqrt{\1}"),  # √(2) -> \sqrt{2}
    (re.compile(r"(?<![\\A-Za-z])sqrt\s*(?=[\d{])"), r"\\sqrt"),
    (re.compile(r"\\sqrt\s*(\d+(?:\.\d+)?|[A-Za-z](?![A-Za-z]))"), r"\\sqrt{\1}"),  # √2, \sqrt2 -> \sqrt{2}
    (re.compile(r"(\d)\s*\{\s*([A-Za-z]{1,12})\s*\}"), r"\1 \2"),  # '4{cm}' -> '4 cm' (a unit, not 4·c·m)
    (re.compile(r"\s+"), " "),
    (re.compile(r"\s*([^A-Za-z0-9\\\s])\s*"), r"\1"),  # spaces stay only between words and numbers
]
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?![A-Za-z])")


# A matrix environment, innermost first; `array` may carry a column spec ({cc}). vmatrix (a determinant) and
# Vmatrix (a norm) keep their names; every other layout is the same matrix, written pmatrix.
_MATRIX_RE = re.compile(r"\\begin\{((?:[pbBvV]|small)?matrix|array)\}(?:\{[^{}]*\})?((?:(?!\\begin\{).){0,4000}?)"
                        r"\\end\{\1\}", re.DOTALL)
MATRIX_NAMES = {"vmatrix": "vmatrix", "Vmatrix": "Vmatrix"}  # the rest are written pmatrix
MAX_MATRIX_ENTRIES = 256  # [ours] an answer's matrices are small; larger ones are not normalised entry by entry
_WHOLE_MATRIX_RE = re.compile(r"\\begin\{(pmatrix|vmatrix|Vmatrix)\}((?:(?!\\begin\{).)*)\\end\{\1\}", re.DOTALL)
_BRACKETED_MATRIX_RE = re.compile(r"^[(\[](\\begin\{pmatrix\}(?:(?!\\begin\{).)*\\end\{pmatrix\})[)\]]$", re.DOTALL)


def _matrix(match: re.Match) -> str:
    """One matrix in one layout: rows split at '\\\\', entries at '&', each entry in `normal_form`."""
    rows = [row for row in re.split(r"\\\\(?:\[[^\]]*\])?", match[2]) if row.strip()]  # a trailing '\\' ends no row
    body = "\\\\".join("&".join(normal_form(entry) for entry in row.split("&")) for row in rows)
    name = MATRIX_NAMES.get(match[1], "pmatrix")
    return f"\\begin{{{name}}}{body}\\end{{{name}}}"


def normal_form(answer: str) -> str:
    """One spelling of a math answer: `3√5` -> '3\\sqrt{5}', '\\dfrac{1}{2}' -> '\\frac{1}{2}'."""
    text = "".join(_UNICODE.get(char, char) for char in answer)
    if "\\begin{" in text and text.count("&") + text.count("\\\\") <= MAX_MATRIX_ENTRIES:
        while (matrices := _MATRIX_RE.sub(_matrix, text)) != text:  # innermost first
            text = matrices
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    text = _BRACKETED_MATRIX_RE.sub(r"\1", text.strip().rstrip(".").strip())  # '\\left(\\begin{array}..\\right)'
    return text


def compact(text: str) -> str:
    """`normal_form` without any space, for text equality ('x^2 + 1' == 'x^2+1')."""
    return text.replace(" ", "")


def is_prose(text: str) -> bool:
    """A sentence, a refusal or a hedge rather than an answer: 'I cannot determine 5 exactly',
    'approximately 5', '18 or 20', 'no solution'. A word of CLAIM_WORDS, or three plain words in a row."""
    if any(w.lower() in CLAIM_WORDS for w in _WORD_RE.findall(text)):
        return True
    return bool(re.search(r"(?<![\\A-Za-z])[A-Za-z]{2,}(?: [A-Za-z]{2,}){2}(?![A-Za-z])", text))


@dataclass(frozen=True)
class Shape:
    """What an answer is: 'prose', 'matrix' (`items` its entries row by row, `brackets` its name and size),
    'list' (top-level commas), 'bracketed' (an interval, a union of intervals or a tuple; `brackets` its
    bracket signature) or 'expression'."""

    kind: str
    items: tuple[str, ...]
    brackets: str = ""


_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INTERVAL_RE = re.compile(r"[\[(][^\[\]()]*,[^\[\]()]*[\])]")


def shape(text: str) -> Shape:
    """The shape of a `normal_form` text; a list's items are its top-level comma-separated parts."""
    if is_prose(text):
        return Shape("prose", (text,))
    matrix = _WHOLE_MATRIX_RE.fullmatch(text)
    if matrix:
        rows = [row.split("&") for row in matrix[2].split("\\\\")]
        size = f"{matrix[1]} {len(rows)}x{'/'.join(str(len(row)) for row in rows)}"
        return Shape("matrix", tuple(entry for row in rows for entry in row), size)
    parts = split_top_level(text)
    if len(parts) > 1:
        return Shape("list", tuple(parts))
    pieces = [p.strip() for p in text.split("\\cup")]
    if all(_INTERVAL_RE.fullmatch(p) for p in pieces):
        return Shape("bracketed", tuple(pieces), "".join(p[0] + p[-1] for p in pieces))
    return Shape("expression", (text,))


def thousands(text: str, gold: bool, predicted: str = "") -> bool:
    """'1,200' read as one number. A prediction is read as a number whenever it has the thousands form
    (the gold decides whether a list was asked for). A gold whose comma groups are all three digits
    ('771,400') is one number when the `predicted` text is one number, and a pair when it is a pair
    ('70,110' against '110, 70'); a group starting with 0 ('10,080') cannot be a list of two integers."""
    if not _THOUSANDS_RE.fullmatch(text):
        return False
    if not gold or any(group.startswith("0") for group in text.split(",")[1:]):
        return True
    written = normal_form(predicted)  # a space after a comma is a list as written ('400, 771')
    return shape(written).kind != "list" or (thousands(written, gold=False) and not re.search(r",\s", predicted))


def split_top_level(text: str) -> list[str]:
    """'70,110' -> ['70', '110']; '(1,2),3' -> ['(1,2)', '3']; commas inside any bracket stay."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


_DECIMAL_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")


def exact_decimals(text: str) -> str:
    """'8.062258' -> '\\frac{8062258}{1000000}': math-verify then compares the exact value."""
    return _DECIMAL_RE.sub(lambda m: f"\\frac{{{m[1]}{m[2]}}}{{1{'0' * len(m[2])}}}", text)


Pair = tuple[str, str]
_TEXT_ANSWER_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm|textnormal)\s*\{[^{}0-9]*[A-Za-z][^{}0-9]*\}")


def decide(predicted: str, gold: str, rel_tol: float = 0.0) -> bool | Pair | list[Pair]:
    """True/False when decided in-process, else the (predicted, gold) pair, or the pairs of entries, that
    math-verify must judge (all of them equivalent: correct).

    Prose and `\\text{}` answers are equal only as text, ignoring case; matrices, tuples and intervals entry
    by entry, in the same layout or brackets; a list only to a list of as many items (in any order); numbers
    exactly (within `rel_tol` where the task sets one); everything else symbolically, with decimals made
    exact fractions."""
    p, g = normal_form(predicted), normal_form(gold)
    if compact(p) == compact(g):
        return True
    ps, gs = shape(p), shape(g)
    if "prose" in (ps.kind, gs.kind) or _TEXT_ANSWER_RE.fullmatch(gold.strip().strip("$").strip()):
        return compact(p).lower() == compact(g).lower()
    if "matrix" in (ps.kind, gs.kind):
        return ps.brackets == gs.brackets and _decide_entries(ps.items, gs.items, rel_tol)
    if gs.kind == "list" and not thousands(g, gold=True, predicted=predicted):
        return _decide_lists(ps.items if not _is_set(p) else split_top_level(p[2:-2]), gs.items)
    if ps.kind == "list" and not thousands(p, gold=False):
        return False  # a sequence or several answers where one was asked: '9, 18, 27, 36, ...'
    if ps.kind == "bracketed" and gs.kind == "bracketed":
        return ps.brackets == gs.brackets and _decide_entries(_entries(ps), _entries(gs), rel_tol)
    pv, gv = parse_number(p), parse_number(g)
    if pv is not None and gv is not None:
        return values_equal(pv, gv, g, rel_tol, rounded_gold=False)
    return exact_decimals(p), exact_decimals(g)


def _entries(bracketed: Shape) -> list[str]:
    """The entries of a tuple or of each interval, in order, with an end marker per piece: '(1,2)' -> ['1', '2', '|']."""
    return [entry for piece in bracketed.items for entry in (*split_top_level(piece[1:-1]), "|")]


def _decide_entries(predicted: Sequence[str], gold: Sequence[str], rel_tol: float) -> bool | list[Pair]:
    """Entry by entry, in order: False as soon as one differs or the counts do; the pairs math-verify must judge."""
    if len(predicted) != len(gold):
        return False
    pending: list[Pair] = []
    for p, g in zip(predicted, gold):
        verdict = decide(p, g, rel_tol)
        if verdict is False:
            return False
        if verdict is not True:
            pending += verdict if isinstance(verdict, list) else [verdict]
    return pending or True


def _is_set(text: str) -> bool:
    return text.startswith("\\{") and text.endswith("\\}")


def _decide_lists(predicted: Sequence[str], gold: Sequence[str]) -> bool | tuple[str, str]:
    if len(predicted) != len(gold):
        return False
    pv, gv = [parse_number(x) for x in predicted], [parse_number(x) for x in gold]
    if None not in pv and None not in gv:
        return sorted(pv) == sorted(gv)
    as_set = lambda items: exact_decimals("\\{" + ",".join(items) + "\\}")  # noqa: E731 - unordered in math-verify
    return as_set(predicted), as_set(gold)
