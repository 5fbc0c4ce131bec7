"""Multiple-choice tasks: the options are written into the question, the gold answer is a letter.

The question block follows the common CoT format for AQuA (Wei et al., 2022):
    <question>
    Answer Choices: (A) 5 (B) 6 (C) 7 (D) 8
and the model ends its reasoning with "The answer is (C)." — judged by `verify` with kind "choice".
"""

from __future__ import annotations

import re
from typing import Sequence

from imm.tasks.loading import FileTask

LETTERS = "ABCDEFGHIJ"
# 'A)5', 'A) 5', '(A) 5', 'A. 5': a letter label at the start of an option
_LABEL_RE = re.compile(r"^\s*\(?([A-J])[).:]\s*")


class ChoiceTask(FileTask):
    answer_kind = "choice"


def strip_label(option: str) -> str:
    """'A)$61' -> '$61': the option text without its own letter label."""
    return _LABEL_RE.sub("", str(option), count=1).strip()


def with_choices(question: str, options: Sequence[str]) -> str:
    labelled = " ".join(f"({LETTERS[i]}) {strip_label(o)}" for i, o in enumerate(options))
    return f"{question.strip()}\nAnswer Choices: {labelled}"


def letter_of(answer: object, n_options: int) -> str:
    """The gold letter from a letter ('C', '(C)') or a 0-based index (2 or '2'); checks the range."""
    text = str(answer).strip().strip("()").upper()
    letter = LETTERS[int(text)] if text.isdigit() else text
    if len(letter) != 1 or letter not in LETTERS[:n_options]:
        raise ValueError(f"gold answer {answer!r} is not one of {n_options} options")
    return letter


def choice_solution(rationale: str, letter: str) -> str:
    """A worked solution in docs/method.md form: the rationale on one line, ending 'The answer is (X).'"""
    body = " ".join(line.strip() for line in rationale.splitlines() if line.strip())
    return f"{body} The answer is ({letter}).".strip()
