"""Task registry: every data set the loop and `imm eval` know, built-in world and real, in one dict.

A task spec on the command line or in a config is `NAME` or `NAME=PATH` (a local file or folder).
"""

from __future__ import annotations

from typing import Callable

from imm.errors import UserError
from imm.tasks.base import Problem, Task
from imm.world.families import FAMILIES, WorldTask

# name -> factory(path or None) -> Task
TASKS: dict[str, Callable[[str | None], Task]] = {
    **{name: (lambda path, name=name: WorldTask(name, path)) for name in FAMILIES},
}


def get_task(spec: str) -> Task:
    name, _, path = spec.partition("=")
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](path or None)



