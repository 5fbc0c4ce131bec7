"""MAWPS (Koncel-Kedziorski et al., 2016) and its four parts: short arithmetic word problems; OOD.

Local format: the Qwen2.5-Math copy `mawps/` (../shared/data/qwen25math_eval/mawps/) — `test.jsonl`
(all 2,065 rows) and the parts `addsub.jsonl`, `multiarith.jsonl`, `singleeq.jsonl`,
`singleop.jsonl`; rows {input, target: number}. A folder PATH picks the task's own file. Gold: target
('43.0' -> '43'; rounded golds such as 3.33333 accept the exact value, see verify.numeric). The data
has no worked solutions: the solution is just "The answer is N." No standard hub copy: pass a PATH.
"""

from __future__ import annotations

from typing import Any, Mapping

from imm.tasks.base import Problem
from imm.tasks.loading import FileTask, first_field, row_id
from imm.verify import number_text

PARTS = ("addsub", "multiarith", "singleeq", "singleop")


class Mawps(FileTask):
    name = "mawps"
    data_format = "jsonl rows {input, target: number} in test.jsonl (or addsub/multiarith/singleeq/singleop.jsonl)"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> Problem:
        question = str(first_field(row, "input", "question", "Question")).strip()
        gold = number_text(first_field(row, "target", "answer", "Answer"))
        return Problem(self.name, row_id(self.name, row, index, split), question, gold, f"The answer is {gold}.")


def mawps_part(part: str) -> type[Mawps]:
    """The task class of one MAWPS part, e.g. `mawps_addsub` reading `addsub.jsonl` from a folder."""
    fields = {"name": f"mawps_{part}", "file_names": {"test": f"{part}.jsonl"},
              "data_format": f"jsonl rows {{input, target: number}} ({part}.jsonl in a mawps folder)"}
    return type(f"Mawps_{part}", (Mawps,), fields)
