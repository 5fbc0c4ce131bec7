"""SAT math (the 32-question set of the Qwen2.5-Math evaluation): four-option algebra; OOD.

Local format: `sat_math/test.jsonl` (../shared/data/qwen25math_eval/sat_math/) — rows
{question, options: 'A) $f(-6)=0$ B) ...' or 'A. 1,190 B. ...' (one string, or a list),
Answer: letter}.
Question: the question and "Answer Choices: (A) ... (D) ...". Gold: the letter. No worked
solutions: the solution is "The answer is (X)." No standard hub copy: pass a PATH.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.choice import ChoiceTask, choice_solution, letter_of, with_choices
from imm.tasks.loading import first_field, row_id

LETTERS = "ABCDEFGHIJ"


def split_options(options: str | list) -> list[str]:
    """'A) 5 B) 6' or 'A. 5 B. 6' -> ['5', '6']; a list passes through.

    Labels are searched in order (A, then B after it, ...), so a stray 'B.' inside option A's text
    before the real label B cannot reorder the options."""
    if isinstance(options, list):
        return [str(o) for o in options]
    starts: list[tuple[int, int]] = []  # (label start, text start) per option
    for letter in LETTERS:
        found = re.compile(rf"(?:^|\s){letter}[).]\s*").search(options, starts[-1][1] if starts else 0)
        if not found:
            break
        starts.append((found.start(), found.end()))
    if len(starts) < 2:
        raise ValueError(f"cannot split options {options[:60]!r} into A) B) C) ...")
    ends = [s for s, _ in starts[1:]] + [len(options)]
    return [options[t:e].strip() for (_, t), e in zip(starts, ends)]


class SatMath(ChoiceTask):
    name = "sat_math"
    data_format = "jsonl rows {question, options: 'A) .. B) ..', Answer: letter}"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        options = split_options(first_field(row, "options", "choices"))
        gold = letter_of(first_field(row, "Answer", "answer", "correct"), len(options))
        question = with_choices(str(first_field(row, "question")), options)
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, choice_solution("", gold))
