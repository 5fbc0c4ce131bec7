"""GSM8K (Cobbe et al., 2021): grade-school math word problems; the in-domain set for real models.

Local format (openai/grade-school-math `grade_school_math/data/`, or ../shared/data/gsm8k/):
`train.jsonl` / `test.jsonl`, one object a line with `question` and `answer`, where `answer` is the
worked solution with calculator notes `<<48/2=24>>` and ends "#### N". Gold: N without commas.
The solution becomes docs/method.md's form: notes removed, one line, ending "The answer is N."
Hub: openai/gsm8k (config "main").
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.loading import FileTask, HubSource, first_field, row_id
from imm.verify import parse_number

_CALC_RE = re.compile(r"<<[^>]*>>")


def split_solution(answer: str) -> tuple[str, str]:
    """'... 9 * 2 = $<<9*2=18>>18 ...\\n#### 18' -> ('... 9 * 2 = $18 ... The answer is 18.', '18')."""
    body, sep, final = answer.rpartition("####")
    if not sep:
        raise ValueError("the answer has no '#### N' line")
    gold = final.strip().replace(",", "")
    if parse_number(gold) is None:
        raise ValueError(f"the final answer {final.strip()!r} is not a number")
    lines = [line.strip() for line in _CALC_RE.sub("", body).splitlines() if line.strip()]
    return " ".join(lines + [f"The answer is {gold}."]), gold


class Gsm8k(FileTask):
    name = "gsm8k"
    hub = HubSource("openai/gsm8k", "main")
    data_format = "jsonl rows {question, answer: solution ending '#### N'} in train.jsonl/test.jsonl"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        solution, gold = split_solution(first_field(row, "answer", "solution"))
        question = first_field(row, "question", "problem")
        return Problem(self.name, row_id(self.name, row, index, split), question.strip(), gold, solution)
