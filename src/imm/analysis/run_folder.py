"""Layer analysis of a run folder (every arm and iteration) or of any two checkpoints.

For iteration t of an arm the checkpoints are θ0 (the run's base), F_t (`finetuned/`), θ_t (`merged/`,
merging arms only; elsewhere θ_t = F_t) and θ_{t−1} (the previous iteration's model; θ0 at
t = 1). Outputs go to arms/<arm>/iter_<t>/analysis/, which appears whole or not at all; an iteration
whose analysis/ exists is skipped. θ0's importance is measured once and cached in analysis_cache/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from imm.analysis.importance import check_kinds, probe_set
from imm.analysis.importance_cache import cached_importance
from imm.analysis.superficiality import Superficiality
from imm.analysis.tables import OUTPUTS, write_tables
from imm.analysis.updates import layer_rows, stream_stats
from imm.config import AnalysisConfig, EvalConfig, FinetuneConfig, ImportanceKind, ModelConfig
from imm.errors import UserError
from imm.prompts import PromptConfig
from imm.layout import FINETUNED, MERGED, RunLayout
from imm.outputs import check_output_dir, output_dir

CACHE_DIR = "analysis_cache"  # beside the tables of `imm analyze --base A --model B --out DIR`
ANALYSIS = "analysis"  # the kind of output these tables are (imm.outputs)
PREVIOUS = "previous"


def base_folder(base: str | Path) -> Path:
    """θ0 as a local folder ("builtin" -> the shipped model); analysis reads safetensors from disk."""
    from imm.models import resolve_model_path

    where = resolve_model_path(base)
    if not isinstance(where, Path):
        raise UserError(f"base {base} is a hub id; download it and pass its local folder (analysis reads files)")
    return where


def check_request(importance: Sequence[str], probe_task: str, probe_size: int) -> None:
    """Fail on a bad importance kind, probe task or size before any checkpoint is read."""
    check_kinds(importance)
    if importance:
        probe_set(probe_task, probe_size)


def iteration_checkpoints(layout: RunLayout, arm: str, iteration: int) -> dict[str, Path]:
    if not layout.finetuned(arm, iteration).exists():
        raise UserError(f"{layout.finetuned(arm, iteration)} does not exist; analyse iteration {iteration} after it "
                        f"has trained")
    found = {FINETUNED: layout.finetuned(arm, iteration)}
    if layout.merged(arm, iteration).exists():
        found[MERGED] = layout.merged(arm, iteration)
    if iteration > 1:
        found[PREVIOUS] = layout.theta(arm, iteration - 1)
    return found


def analyze_iteration(
    run_dir: Path,
    arm: str,
    iteration: int,
    *,
    base: Path,
    probe_task: str = AnalysisConfig.probe_task,
    probe_size: int = AnalysisConfig.probe_size,
    importance: tuple[ImportanceKind, ...] = AnalysisConfig.importance,
    max_new_tokens: int = EvalConfig.max_new_tokens,
    device: str = ModelConfig.device,
    prompt: PromptConfig = PromptConfig(),
    max_length: int = FinetuneConfig.max_length,
) -> None:
    """Write arms/<arm>/iter_<t>/analysis/ {layers.csv, importance.csv, superficiality.json}; skip if present.
    `max_length`: the run's finetune.max_length, which the gradient and influence probes fit their examples to."""
    layout = RunLayout(Path(run_dir))
    out = layout.analysis(arm, iteration)
    if all((out / name).exists() for name in OUTPUTS):
        return
    check_request(importance, probe_task, probe_size)
    base = base_folder(base)
    checkpoints = iteration_checkpoints(layout, arm, iteration)
    previous = PREVIOUS if PREVIOUS in checkpoints else None
    names, groups = stream_stats(base, checkpoints)
    rows = layer_rows(names, groups, FINETUNED, previous=previous)
    if MERGED in checkpoints:
        rows += layer_rows(names, groups, MERGED, previous=previous, finetuned=FINETUNED)
    imp = cached_importance(base, importance, layout.importance_cache, probe_task=probe_task, probe_size=probe_size,
                            max_new_tokens=max_new_tokens, device=device, prompt=prompt,
                            max_length=max_length) if importance else {}
    context = {"arm": arm, "iteration": iteration, "base": str(base), "probe_task": probe_task,
               "probe_size": probe_size, "checkpoints": {k: str(v) for k, v in checkpoints.items()}}
    with output_dir(out, ANALYSIS, overwrite=True) as tmp:  # inside a run folder imm owns every path
        write_tables(tmp, rows, imp, context)


def run_iterations(run_dir: Path) -> list[tuple[str, int]]:
    """(arm, t) of every iteration with a fine-tuned model, arms by name and iterations in order."""
    if not (Path(run_dir) / "arms").is_dir():
        raise UserError(f"{run_dir} has no arms/ folder; pass a run folder written by `imm run`")
    return RunLayout(Path(run_dir)).trained_iterations()


def run_settings(run_dir: Path) -> dict:
    """base, prompt, probe_task, probe_size, importance, max_new_tokens, max_length and device, as the run's
    config.yaml (read by its layout) sets them: what `imm analyze RUN_DIR` uses where its command line is silent."""
    saved = RunLayout(Path(run_dir)).saved()
    cfg = saved.config
    return {"base": saved.model_folder("base"), "device": cfg.model.device, "prompt": cfg.prompt,  # a hub id's local copy
            "probe_task": cfg.analysis.probe_task, "probe_size": cfg.analysis.probe_size,
            "importance": cfg.analysis.importance,
            "max_new_tokens": cfg.eval.max_new_tokens,  # the loop's analysis generates this long
            "max_length": cfg.finetune.max_length}  # the loop's probe fits its examples to it


def analyze_pair(
    base: Path,
    model: Path,
    out: Path,
    *,
    probe_task: str = AnalysisConfig.probe_task,
    probe_size: int = AnalysisConfig.probe_size,
    importance: Sequence[ImportanceKind] = AnalysisConfig.importance,
    max_new_tokens: int = EvalConfig.max_new_tokens,
    device: str = ModelConfig.device,
    overwrite: bool = False,
) -> list[Superficiality]:
    """The three outputs for any two compatible checkpoints, written as one new folder `out`;
    θ0's importance is cached in out/analysis_cache (kept when an earlier analysis is replaced)."""
    check_request(importance, probe_task, probe_size)
    base, model = base_folder(base), base_folder(model)
    check_output_dir(out, ANALYSIS, overwrite=overwrite, inputs=(base, model))
    names, groups = stream_stats(base, {"model": model})
    rows = layer_rows(names, groups, "model")
    context = {"base": str(base), "model": str(model), "probe_task": probe_task, "probe_size": probe_size}
    with output_dir(out, ANALYSIS, overwrite=overwrite, inputs=(base, model)) as tmp:
        if (Path(out) / CACHE_DIR).is_dir():
            shutil.copytree(Path(out) / CACHE_DIR, tmp / CACHE_DIR)
        imp = cached_importance(base, importance, tmp / CACHE_DIR, probe_task=probe_task, probe_size=probe_size,
                                max_new_tokens=max_new_tokens, device=device) if importance else {}
        return write_tables(tmp, rows, imp, context)
