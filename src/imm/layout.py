"""The run folder: one object owns every path in it, and a stage is done exactly when its output exists.

    runs/<name>/
      config.yaml                       resolved config, written before any work
      run.lock                          held by the one `imm run` writing this folder (imm.run_lock)
      summary.csv                       arm,iteration,model,task,domain,metric,value,n
      timings.jsonl                     wall time and peak memory of every stage that ran (a log; imm.stage_memory)
      report/                           index.html and its figures (imm report), refreshed every iteration
      iter_0/eval/generator.json        θ0's evaluation, shared by every arm (+ teacher.json with a teacher)
      analysis_cache/                   layer importance of θ0, computed once
      arms/<arm>/iter_<t>/
        samples.jsonl                   S_t: every sampled completion, with its verdict and prompt
        samples.generation.json         the generation settings S_t was drawn with
        dataset.jsonl                   D_t: the verified, filtered training set (+ dataset_stats.json)
        finetuned/                      F_t  (Hugging Face checkpoint; + finetune_stats.json beside it)
        train_log.jsonl                 loss, learning rate and throughput of every optimizer step
        merged/                         θ_t  (merging arms only)
        second/                         a second F_t, another seed (finetuned/, finetune_stats.json, train_log.jsonl),
                                        for a merge block that merges two fine-tunes (model_stock)
        eval/<model>.json               accuracy and diversity of one model (+ <model>.samples.jsonl)
        analysis/                       layer tables (imm analyze)

Every file is written atomically (imm.outputs). The loop, the summary, the analysis and the report
ask a `RunLayout` for paths; nothing else spells one. `RunLayout.saved` is the one reader of a run's
config.yaml, and the run-folder checks (`check_run_dir`, `check_resumable`, `prepare_run_dir`) live here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from imm.arms import Stage
from imm.config import RunConfig, experiment_settings, from_dict, plain, to_dict
from imm.errors import UserError
from imm.models import ResolvedModel
from imm.outputs import atomic_write_text, is_temporary, remove_written

GENERATOR, FINETUNED, MERGED = "generator", "finetuned", "merged"  # θ0 (iteration 0), F_t, θ_t
TEACHER = "teacher"  # the distillation arms' teacher, evaluated at iteration 0 beside θ0
MODELS = (FINETUNED, MERGED)

# The run folder's own top-level files and folders, by attribute; `imm run --restart` removes a folder
# that holds only these (and the `iter_0` and `arms` trees).
TOP_LEVEL = {"config": "config.yaml", "lock": "run.lock", "summary": "summary.csv", "timings": "timings.jsonl",
             "report": "report", "importance_cache": "analysis_cache"}
RUN_ENTRIES = (*TOP_LEVEL.values(), "iter_0", "arms")


def _top_level(attribute: str) -> property:
    return property(lambda self: self.root / TOP_LEVEL[attribute], doc=f"<run>/{TOP_LEVEL[attribute]}")


@dataclass(frozen=True)
class SavedRun:
    """A run folder's config.yaml: the settings the run was made with, and where it found each model."""

    config: RunConfig
    resolved: dict[str, dict] = field(default_factory=dict)  # model name -> {spec, folder, revision}

    def model_folder(self, name: str = "base") -> str:
        """Where the run found a model: a hub id's local copy, else the spec the config gives."""
        found = (self.resolved.get(name) or {}).get("folder")
        return str(found or getattr(self.config.model, name))


@dataclass(frozen=True)
class RunLayout:
    root: Path

    config = _top_level("config")  # the resolved config, written before any work
    lock = _top_level("lock")  # held by the process that writes the run
    summary = _top_level("summary")
    timings = _top_level("timings")
    report = _top_level("report")
    importance_cache = _top_level("importance_cache")  # θ0's layer importance, measured once

    def reference_evaluation(self, model: str = GENERATOR) -> Path:
        """Iteration 0, shared by every arm: θ0 (`generator`) and, with distillation arms, the teacher."""
        return self.root / "iter_0" / "eval" / f"{model}.json"

    def iteration(self, arm: str, t: int) -> Path:
        return self.root / "arms" / arm / f"iter_{t}"

    def samples(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "samples.jsonl"

    def dataset(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "dataset.jsonl"

    def dataset_stats(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "dataset_stats.json"

    def model(self, arm: str, t: int, name: str) -> Path:
        """F_t (`finetuned`) or θ_t (`merged`) of an arm's iteration."""
        return self.iteration(arm, t) / name

    def finetuned(self, arm: str, t: int) -> Path:
        return self.model(arm, t, FINETUNED)

    def merged(self, arm: str, t: int) -> Path:
        return self.model(arm, t, MERGED)

    def finetune_stats(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "finetune_stats.json"

    def second_finetuned(self, arm: str, t: int) -> Path:
        """A second F_t of the same data and init, another seed: what model_stock merges beside F_t."""
        return self.iteration(arm, t) / "second" / FINETUNED

    def second_finetune_stats(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "second" / "finetune_stats.json"

    def training_log(self, arm: str, t: int) -> Path:
        return training_log(self.finetune_stats(arm, t))

    def evaluation(self, arm: str, t: int, model: str) -> Path:
        return self.iteration(arm, t) / "eval" / f"{model}.json"

    def analysis(self, arm: str, t: int) -> Path:
        return self.iteration(arm, t) / "analysis"

    def theta(self, arm: str, t: int) -> Path:
        """θ_t as written: merged/ where the arm merged, else finetuned/ (F_t)."""
        return self.merged(arm, t) if self.merged(arm, t).exists() else self.finetuned(arm, t)

    def stage_files(self, stage: Stage, arm: str, t: int) -> tuple[Path, ...]:
        """What one stage writes, the output that marks it done last: what two arms share, they link."""
        files = {
            Stage.SAMPLE: (generation_record(self.samples(arm, t)), self.samples(arm, t)),
            Stage.VERIFY: (self.dataset_stats(arm, t), self.dataset(arm, t)),
            Stage.FINETUNE: (self.finetune_stats(arm, t), self.training_log(arm, t), self.finetuned(arm, t)),
            Stage.EVALUATE: (eval_samples(self.evaluation(arm, t, FINETUNED)), self.evaluation(arm, t, FINETUNED)),
        }
        return files[stage]

    def trained_iterations(self) -> list[tuple[str, int]]:
        """(arm, t) of every iteration with a fine-tuned model, arms by name and iterations in order."""
        found = []
        for arm in sorted(p for p in (self.root / "arms").iterdir() if p.is_dir()):
            steps = sorted(int(m.group(1)) for p in arm.iterdir() if (m := re.fullmatch(r"iter_(\d+)", p.name)))
            found += [(arm.name, t) for t in steps if self.finetuned(arm.name, t).exists()]
        return found

    def saved(self) -> SavedRun:
        """The run's config.yaml parsed into a `RunConfig`, or one line saying why this is no run folder."""
        hint = "pass a run folder written by `imm run`"
        if not self.config.is_file():
            raise UserError(f"{self.root} holds no config.yaml; {hint}")
        try:
            raw = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            raise UserError(f"{self.config} is not valid YAML; {hint}") from None
        if not isinstance(raw, dict):
            raise UserError(f"{self.config} is not a run config; {hint}")
        resolved = raw.pop("resolved", None) or {}  # where the models were found: a record, not a setting
        return SavedRun(from_dict(RunConfig, raw), resolved if isinstance(resolved, dict) else {})

    def foreign_entries(self) -> list[str]:
        """Top-level names that no run writes (temporaries of a killed run excluded)."""
        return sorted(p.name for p in self.root.iterdir() if p.name not in RUN_ENTRIES and not is_temporary(p))


def check_run_dir(layout: RunLayout, restart: bool) -> None:
    """A run writes only into a new folder or one that holds an imm run; --restart deletes only such a run."""
    run_dir = layout.root
    if run_dir.is_symlink() and restart:
        raise UserError(f"{run_dir} is a symbolic link; --restart deletes only a run folder itself: remove the link yourself")
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run folder; choose another name=... or out_dir=...")
    if any(p != layout.lock for p in run_dir.iterdir()) and not layout.config.is_file():
        raise UserError(f"{run_dir} exists and holds no imm run (no config.yaml); imm writes runs only into new "
                        f"folders: choose another name=... or out_dir=...")
    if restart and (foreign := layout.foreign_entries()):
        raise UserError(f"{run_dir} holds entries no run writes ({', '.join(foreign[:3])}); --restart deletes only "
                        f"a run folder: move them away first")


def check_resumable(cfg: RunConfig, layout: RunLayout) -> None:
    """Resume only the same experiment: run options (device, dtype, threads, batch sizes) may change."""
    try:
        saved = layout.saved().config
    except UserError:  # unreadable: every setting counts as changed
        saved = None
    old, new = (experiment_settings(saved) if saved else {}), experiment_settings(cfg)
    changed = sorted(k for k in new if old.get(k, object()) != new[k])
    if changed:
        shown = ", ".join(f"{k} ({plain(old.get(k, '?'))} -> {plain(new[k])})" for k in changed[:3])
        raise UserError(f"{cfg.run_dir} holds a run with other settings: {shown}; resume it with the same settings, "
                        f"pass --restart to start over, or choose another name=...")


def prepare_run_dir(cfg: RunConfig, layout: RunLayout, restart: bool,
                    resolved: dict[str, ResolvedModel] | None = None) -> None:
    """`check_run_dir`, then `write_run_config`."""
    check_run_dir(layout, restart)
    write_run_config(cfg, layout, restart, resolved)


def write_run_config(cfg: RunConfig, layout: RunLayout, restart: bool,
                     resolved: dict[str, ResolvedModel] | None = None) -> None:
    """Write the resolved config (and where each model was found) before any work; refuse to resume a
    folder made for another experiment. `check_run_dir` has passed (the loop runs it before it locks the folder)."""
    if restart and layout.root.exists():
        remove_written(layout.root, run_entries=RUN_ENTRIES)
    if layout.config.exists():
        check_resumable(cfg, layout)
    record = {name: {"spec": m.spec, "folder": str(m.folder), "revision": m.revision} for name, m in (resolved or {}).items()}
    atomic_write_text(layout.config, yaml.safe_dump({**to_dict(cfg), "resolved": record}, sort_keys=False))
    for leftover in [p for p in layout.root.rglob(".*") if is_temporary(p)]:
        remove_written(leftover)  # from a killed run


def generation_record(samples: Path) -> Path:
    """samples.generation.json beside samples.jsonl: the generation settings the samples were drawn with."""
    return samples.with_suffix(".generation.json")


def eval_samples(evaluation: Path) -> Path:
    """eval/<model>.samples.jsonl beside eval/<model>.json: the completions behind the figures."""
    return evaluation.with_suffix(".samples.jsonl")


def training_log(finetune_stats: Path) -> Path:
    """train_log.jsonl beside finetune_stats.json: one line per optimizer step (imm.finetune.train)."""
    return finetune_stats.with_name("train_log.jsonl")


def tensorboard_dir(training_log: Path) -> Path:
    """TensorBoard event files beside the training log, when tensorboard is installed."""
    return training_log.with_name("tensorboard")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
