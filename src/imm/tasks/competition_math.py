"""Competition mathematics with \\boxed{} answers: MATH / MATH-500 (`math`) and the Minerva subset.

Local format: jsonl rows {problem, solution} with the answer in the solution's last \\boxed{...}, or
{problem, answer} (MATH-500 also has both). Files: MATH-500's `test.jsonl`, Hendrycks MATH rows
(one folder of .json files per subject is not read: concatenate them to jsonl), or the Qwen2.5-Math
copy `minerva_math/test.jsonl` (272 rows, ../shared/data/qwen25math_eval/minerva_math/).
Gold: `answer` when present, else the last \\boxed{} of `solution`. `math` is judged with kind
"math", exactly (an approximation of \\sqrt{65} or 2\\pi is wrong); `minerva_math`, whose answers are
measured quantities ('2.19e6'), with kind "math-approx": numbers within a relative 1e-4, as the
Qwen2.5-Math toolkit that ships this copy judges them. The solution is kept as written (it ends with
its \\boxed{}), blank lines folded so it never contains the "\\n\\n" stop string. Hub: HuggingFaceH4/MATH-500
for `math` (test split only); `minerva_math` has no standard hub copy: pass a PATH.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.loading import FileTask, HubSource, first_field, row_id
from imm.verify import last_boxed

# Multi-paragraph solutions: only a new question ends the answer.
MATH_STOP_STRINGS = ("\nQuestion:",)


class CompetitionMath(FileTask):
    name = "math"
    answer_kind = "math"
    hub = HubSource("HuggingFaceH4/MATH-500", splits={"test": "test"})
    data_format = "jsonl rows {problem, solution with \\boxed{answer}} or {problem, answer}"
    stop = MATH_STOP_STRINGS

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        solution = re.sub(r"\n\s*\n", "\n", str(row.get("solution") or "")).strip()
        gold = row.get("answer") or last_boxed(solution)
        if not gold or not str(gold).strip():
            raise ValueError("the row has no 'answer' and its solution has no \\boxed{} answer")
        question = str(first_field(row, "problem", "question")).strip()
        solution = solution or f"The answer is ${gold}$."
        return Problem(self.name, row_id(self.name, row, index, split), question, str(gold).strip(), solution)


class MinervaMath(CompetitionMath):
    name = "minerva_math"
    hub = None
    answer_kind = "math-approx"  # [ours, after Qwen2.5-Math's grader] measured quantities, not exact values
