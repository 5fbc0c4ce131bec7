"""ASDiv (Miao et al., 2020): diverse elementary word problems; out-of-domain.

Local format: the Qwen2.5-Math copy `asdiv/test.jsonl` (../shared/data/qwen25math_eval/asdiv/) —
rows {body, question, answer: '9 (apples)', formula: '7+2=9'}. Gold: the number before the unit in
brackets. [ours] Rows whose answer is not a number ('Yes', '3:30 p.m.', '5:6', a name: 131 of
2,215) are dropped, so this is the numeric subset (2,084 rows) that a number checker can judge.
Solution: "formula. The answer is N." Hub: EleutherAI/asdiv (its only split, validation, as test).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.loading import FileTask, HubSource, first_field, row_id
from imm.verify import number_text, parse_number


def numeric_gold(answer: str) -> str | None:
    """'9 (apples)' -> '9'; '14  (seats)' -> '14'; 'Yes' / '3:30 p.m.' / '5:6' -> None."""
    text = re.sub(r"\([^)]*\)", "", str(answer)).strip()
    if not re.fullmatch(r"-?[\d,]*\.?\d+", text):
        return None
    value = parse_number(text)
    return None if value is None else number_text(text.replace(",", ""))


class Asdiv(FileTask):
    name = "asdiv"
    hub = HubSource("EleutherAI/asdiv", splits={"test": "validation"})
    data_format = "jsonl rows {body, question, answer: 'N (unit)', formula}"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem | None:
        gold = numeric_gold(first_field(row, "answer", "Answer"))
        if gold is None:
            return None
        body = str(first_field(row, "body", "Body")).strip()
        question = f"{body} {str(first_field(row, 'question', 'Question')).strip()}".strip()
        formula = str(row.get("formula", "")).strip()
        solution = (f"{formula}. " if formula else "") + f"The answer is {gold}."
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, solution)
