"""MMLU-STEM (the STEM subjects of Hendrycks et al., 2021): four-option questions; OOD.

Local format: `mmlu_stem/test.jsonl` (3,018 rows, ../shared/data/qwen25math_eval/mmlu_stem/) —
rows {question, choices: [4 strings], answer: 0-based index (or a letter), type/subject}.
Question: the question and "Answer Choices: (A) ... (D) ...". Gold: the letter of `answer`.
No worked solutions: the solution is "The answer is (X)." Hub: TIGER-Lab/MMLU-STEM.
"""

from __future__ import annotations

from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.choice import ChoiceTask, choice_solution, letter_of, with_choices
from imm.tasks.loading import HubSource, first_field, row_id


class MmluStem(ChoiceTask):
    name = "mmlu_stem"
    hub = HubSource("TIGER-Lab/MMLU-STEM", splits={"test": "test"})
    data_format = "jsonl rows {question, choices: [..4], answer: index or letter}"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        options = list(first_field(row, "choices", "options"))
        gold = letter_of(first_field(row, "answer", "Answer"), len(options))
        question = with_choices(str(first_field(row, "question")), options)
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, choice_solution("", gold))
