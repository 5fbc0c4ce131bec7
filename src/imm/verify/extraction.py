"""Reading the final answer out of a completion, per answer kind and lm-evaluation-harness metric.

    kind     strict-match                                    flexible-extract
    number   the number stated after the last "The answer is" last number in the text (with any
             / "####"; the statement (to '. ' or the line's   letters glued to it: '120x')
             end) must be that number and at most a unit,
             else it is returned whole ('18 or 20') and fails
    math     last \\boxed{...} or text after "The answer is"   strict, else the last number
    choice   letter after the last "The answer is"            strict, else the last "(X)" / "X)" / lone X

All patterns are linear-time regular expressions or a single brace scan, so hostile completions
cannot stall extraction; the first `MAX_SCAN_CHARS` characters of an answer are read at most.
"""

from __future__ import annotations

import re

from imm.verify.numeric import NUMBER, NUMBER_TOKEN, unit_tail

STRICT = "strict-match"
FLEXIBLE = "flexible-extract"
METRICS = (STRICT, FLEXIBLE)
KINDS = ("number", "math", "math-approx", "choice")
# The math kinds and the relative tolerance each allows between numbers: exact for competition answers;
# 1e-4 for measured quantities (Minerva's physics answers), where the task says so by its kind.
REL_TOL = {"math": 0.0, "math-approx": 1e-4}
MAX_SCAN_CHARS = 1000  # a math answer longer than this is cut; no real gold answer comes close

_TRIGGER = r"(?i:the answer is|####)"  # the trigger ignores case; choice letters do not
# Decoration a model puts between the trigger and the value: ':', '=', '$', '\(', '\boxed{', '**'.
_DECOR = r"\s*[:=]?\s*(?:\\?\$|\\\(|\\boxed\{|\*\*|\\\[)*\s*"
# The number and the rest of its statement: up to '. ', a line end, or 80 characters at most.
_STRICT_NUMBER_RE = re.compile(rf"{_TRIGGER}{_DECOR}({NUMBER})([^\n]{{0,80}}?)(?=\.\s|\.?$|\.?\n)", re.MULTILINE)
_ANY_NUMBER_RE = re.compile(NUMBER_TOKEN)
# Decoration closing a statement: '**', '$', '\)', '}' (of \boxed{}), and a clause after ', '.
_CLOSING_RE = re.compile(r"(?:\s*(?:\*\*|\$|\\\)|\\\]|\}))+\s*$")
_LEADING_CLOSE_RE = re.compile(r"^(?:\s*(?:\*\*|\$|\\\)|\\\]|\}))+\s*")
_CLAUSE_RE = re.compile(r",\s+(?!(?:or|and|not|but)\b|[-−]?\$?\d).*$", re.IGNORECASE)
_STRICT_TEXT_RE = re.compile(rf"{_TRIGGER}\s*:?\s*")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LETTERS = "A-J"  # MMLU has 4 options, AQuA 5; up to 10 covers MMLU-Pro style sets
_STRICT_CHOICE_RE = re.compile(
    rf"{_TRIGGER}{_DECOR}(?i:option\s*|choice\s*)?\(?\s*([{_LETTERS}])(?![A-Za-z])"
)
_PAREN_CHOICE_RE = re.compile(rf"\(([{_LETTERS}])\)|(?<![A-Za-z])([{_LETTERS}])\)")
# A lone capital as the last resort, but not 'I' (the pronoun) or later letters.
_LONE_CHOICE_RE = re.compile(r"(?<![A-Za-z'])([A-H])(?![A-Za-z'])")


def extract(completion: str, metric: str = STRICT, kind: str = "number") -> str | None:
    """The final answer as written in `completion` (not normalised), or None when there is none."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; choose one of {', '.join(KINDS)}")
    strict = {"number": _strict_number, "choice": _strict_choice}.get(kind, _strict_math)(completion)
    if metric == STRICT:
        return strict
    if kind == "number":
        return _last(_ANY_NUMBER_RE, completion)  # lm-eval's flexible: last number, whatever came before
    if strict is not None:
        return strict
    return _flexible_choice(completion) if kind == "choice" else _last(_ANY_NUMBER_RE, completion)


def _last(pattern: re.Pattern, text: str) -> str | None:
    found = pattern.findall(text)
    return found[-1].strip() if found else None


def _strict_number(completion: str) -> str | None:
    """The stated number; the whole statement when more than a unit follows it ('18 or 20', '4i')."""
    found = _STRICT_NUMBER_RE.findall(completion)
    if not found:
        return None
    number, rest = found[-1]
    tail = _CLOSING_RE.sub("", _CLAUSE_RE.sub("", rest))  # 'The answer is 36, since ...': the clause ends it
    tail = _LEADING_CLOSE_RE.sub(" ", tail)  # "**18** apples": the bold closes before the unit
    if unit_tail(tail, glued=not tail[:1].isspace()):
        return number.strip()
    return (number + tail).strip()


def _strict_math(completion: str) -> str | None:
    """The later of the last \\boxed{} and the last "The answer is X" (X up to '. ', newline or end)."""
    boxed = [m.end() for m in _BOXED_RE.finditer(completion)]
    stated = [m.end() for m in _STRICT_TEXT_RE.finditer(completion)]
    if not boxed and not stated:
        return None
    if boxed and (not stated or boxed[-1] > stated[-1]):
        return last_boxed(completion)
    return _stated_answer(completion[stated[-1]:stated[-1] + MAX_SCAN_CHARS])


def _stated_answer(rest: str) -> str | None:
    if _BOXED_RE.match(rest.lstrip("$ ")):
        return last_boxed(rest)
    answer = re.split(r"\.\s|\.$|\n", rest, maxsplit=1)[0]
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"^\\\(|\\\)$", "", answer).strip()
    return answer or None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...}, braces balanced; None when absent or unclosed."""
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i, char in enumerate(text[start:start + MAX_SCAN_CHARS]):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[start:start + i].strip()
    return None


def _strict_choice(completion: str) -> str | None:
    found = _STRICT_CHOICE_RE.findall(completion)
    return found[-1].upper() if found else None


def _flexible_choice(completion: str) -> str | None:
    paren = _PAREN_CHOICE_RE.findall(completion)
    if paren:
        return "".join(paren[-1])
    return _last(_LONE_CHOICE_RE, completion)
