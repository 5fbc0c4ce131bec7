"""AQuA-RAT (Ling et al., 2017): algebra word problems with five options and rationales; OOD.

Local format: the Qwen2.5-Math copy `aqua/test.jsonl` (254 rows, ../shared/data/qwen25math_eval/aqua/)
or deepmind/aqua_rat's jsonl — rows {question, options: ['A)5', 'B)6', ...], rationale, correct: 'A'}.
Question: the question and "Answer Choices: (A) 5 (B) 6 ...". Gold: the letter. Solution: the
rationale on one line, its own trailing "Answer: X" line removed, ending "The answer is (X)."
Hub: deepmind/aqua_rat (config "raw").
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.choice import ChoiceTask, choice_solution, letter_of, with_choices
from imm.tasks.loading import HubSource, first_field, row_id

_FINAL_ANSWER_RE = re.compile(r"\n[^\n]*\banswer\b[^\n]*$", re.IGNORECASE)


class Aqua(ChoiceTask):
    name = "aqua"
    hub = HubSource("deepmind/aqua_rat", "raw")
    data_format = "jsonl rows {question, options: ['A)..', ...], rationale, correct: letter}"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        options = list(first_field(row, "options", "choices"))
        gold = letter_of(first_field(row, "correct", "answer"), len(options))
        rationale = _FINAL_ANSWER_RE.sub("", str(row.get("rationale", "")).strip())
        question = with_choices(str(first_field(row, "question")), options)
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, choice_solution(rationale, gold))
