"""SVAMP (Patel et al., 2021): one-step word problems with distracting variations; out-of-domain.

Local format: arkilpatel/SVAMP `SVAMP.json` (a JSON list; ../shared/data/svamp/) or the
Qwen2.5-Math copy `svamp/test.jsonl` — rows {Body, Question, Equation, Answer: number}. All 1,000
rows are the test set. Question: Body (ending with '.') then Question. Gold: Answer ('145.0' ->
'145'). Solution: "Equation = Answer. The answer is Answer." Hub: ChilleD/SVAMP.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.loading import FileTask, HubSource, first_field, row_id
from imm.verify import number_text


def tidy_equation(equation: str) -> str:
    """'( 290.0 / 2.0 )' -> '(290 / 2)': whole numbers without '.0', no padding inside brackets."""
    text = re.sub(r"(\d+)\.0\b", r"\1", equation.strip())
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


class Svamp(FileTask):
    name = "svamp"
    hub = HubSource("ChilleD/SVAMP")
    data_format = "SVAMP.json list or jsonl rows {Body, Question, Equation, Answer: number}"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        body = str(first_field(row, "Body", "body")).strip()
        body = body if body.endswith((".", "?", "!")) else body + "."
        question = f"{body} {str(first_field(row, 'Question', 'question')).strip()}"
        gold = number_text(first_field(row, "Answer", "answer"))
        equation = tidy_equation(str(row.get("Equation", row.get("equation", ""))))
        solution = (f"{equation} = {gold}. " if equation else "") + f"The answer is {gold}."
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, solution)
