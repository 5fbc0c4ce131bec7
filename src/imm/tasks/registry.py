"""Task registry: every data set the loop and `imm eval` know, built-in world and real, in one dict.

A task spec on the command line or in a config is `NAME` or `NAME=PATH` (a local file or folder).
"""

from __future__ import annotations

from typing import Callable

from imm.errors import UserError
from imm.tasks.aqua import Aqua
from imm.tasks.arith import FAMILIES, WorldTask
from imm.tasks.asdiv import Asdiv
from imm.tasks.base import Task
from imm.tasks.competition_math import CompetitionMath, MinervaMath
from imm.tasks.gsm8k import Gsm8k
from imm.tasks.mawps import PARTS as MAWPS_PARTS
from imm.tasks.mawps import Mawps, mawps_part
from imm.tasks.mmlu_stem import MmluStem
from imm.tasks.sat_math import SatMath
from imm.tasks.svamp import Svamp

# name -> factory(path or None) -> Task. Real data sets read PATH (or their hub id without one);
# constructing a task checks the path but reads no data, so specs are validated before any model loads.
TASKS: dict[str, Callable[[str | None], Task]] = {
    **{name: (lambda path, name=name: WorldTask(name, path)) for name in FAMILIES},
    "gsm8k": Gsm8k,
    "svamp": Svamp,
    "asdiv": Asdiv,
    "mawps": Mawps,
    **{f"mawps_{part}": mawps_part(part) for part in MAWPS_PARTS},
    "math": CompetitionMath,
    "minerva_math": MinervaMath,
    "aqua": Aqua,
    "sat_math": SatMath,
    "mmlu_stem": MmluStem,
}


def get_task(spec: str) -> Task:
    name, _, path = spec.partition("=")
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](path or None)



