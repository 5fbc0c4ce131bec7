"""Preflight: every check of a run config, above the stages, before any work (fail before the expensive part).

Each stage checks its own block (`check_*` in its module); this module calls them all, collects every
problem and reports them together, one line each, so one edit of the config fixes them all. `imm run` and
`imm compare` call `load_config` here: the config parsed (imm.config) and checked, before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from imm import config
from imm.arms import ARMS, check_arms, needs_teacher
from imm.config import RunConfig
from imm.engines.vllm import check_vllm
from imm.errors import UserError, several
from imm.evaluation.suite import check_eval
from imm.finetune import check_finetune
from imm.finetune_launch import check_launch
from imm.merging.merge_back import check_merge_block
from imm.models import check_weight_files, resolve_model_path
from imm.names import check_name
from imm.prompts import check_prompt
from imm.sampling import check_sampling
from imm.tasks.registry import get_task

Check = Callable[[], None]


def load_config(name_or_path: str = "default", overrides: tuple[str, ...] = ()) -> RunConfig:
    """The run config of a command line, parsed and checked (`check`)."""
    cfg = config.load_config(name_or_path, overrides)
    check(cfg)
    return cfg


def check(cfg: RunConfig) -> None:
    """Raise one UserError naming every problem of `cfg`, one line each (the line itself when there is one)."""
    if found := problems(cfg):
        raise several(found)


def problems(cfg: RunConfig) -> list[str]:
    """Every problem the checks find, each once, in the config's order."""
    found: list[str] = []
    for run_check in checks(cfg):
        try:
            run_check()
        except UserError as err:
            if str(err) not in found:
                found.append(str(err))
    return found


def checks(cfg: RunConfig) -> list[Check]:
    """One check per stage block (its own module's), then the tasks and the models' files."""
    return [
        lambda: config.check_ranges(cfg),
        lambda: _check_run(cfg),
        lambda: check_arms(cfg.arms, cfg.merge_arms),
        *[lambda name=name, block=block: _check_merge_arm(name, block) for name, block in cfg.merge_arms.items()],
        lambda: check_sampling(cfg.sampling),
        lambda: check_vllm(cfg.sampling, start=cfg.sampling.backend is config.Backend.VLLM),
        lambda: check_prompt(cfg.prompt),
        lambda: check_finetune(cfg.finetune),
        lambda: check_launch(cfg.finetune),
        lambda: _check_merge(cfg.merge),
        lambda: check_eval(cfg.eval),
        *[lambda spec=spec: get_task(spec) for spec in _task_specs(cfg)],
        lambda: _require(not _needs_teacher(cfg) or bool(cfg.model.teacher),
                         "a distillation arm needs model.teacher=PATH_OR_HUB_ID"),
        *[lambda model=model: _check_model_files(model, cfg.model.allow_pickle) for model in _models(cfg)],
    ]


def _check_run(cfg: RunConfig) -> None:
    _require(cfg.iterations > 0, f"iterations must be positive, got {cfg.iterations}; set iterations=3")
    _require(len(set(cfg.seeds)) == len(cfg.seeds), f"seeds lists a seed twice: {list(cfg.seeds)}; list each once")
    _require(cfg.data.train_questions > 0, f"data.train_questions must be positive, got {cfg.data.train_questions}")
    check_name(cfg.name, "name (the run folder's name)")


def _check_merge_arm(name: str, block: config.MergeConfig) -> None:
    _require(name not in ARMS, f"merge_arms.{name}: {name} is a built-in arm; give the merging arm another name")
    _require(0 < block.density <= 1, f"merge_arms.{name}.density must be in (0, 1], got {block.density}")
    try:
        check_merge_block(block)
    except UserError as err:
        raise UserError(f"merge_arms.{name}: {err}") from None


def _check_merge(block: config.MergeConfig) -> None:
    _require(0 < block.density <= 1, f"merge.density must be in (0, 1], got {block.density}")
    check_merge_block(block)


def _task_specs(cfg: RunConfig) -> list[str]:
    specs = (cfg.data.train_task, *cfg.data.id_tasks, *cfg.data.ood_tasks, cfg.analysis.probe_task)
    return list(dict.fromkeys(specs))


def _needs_teacher(cfg: RunConfig) -> bool:
    try:
        return needs_teacher(cfg.arms, cfg.merge_arms)
    except UserError:  # an unknown arm: check_arms names it
        return False


def _models(cfg: RunConfig) -> list[str]:
    """θ0, and the teacher where an arm distils and names one."""
    return [cfg.model.base, *([cfg.model.teacher] if _needs_teacher(cfg) and cfg.model.teacher else [])]


def _check_model_files(model: str, allow_pickle: bool) -> None:
    """A local folder's weights: safetensors whole, or pickles only when allowed (hub ids are checked on fetch)."""
    if isinstance(where := resolve_model_path(model), Path):
        check_weight_files(where, allow_pickle)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
