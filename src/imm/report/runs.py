"""The run folders a report reads: one `Run` per folder, every file found through its `RunLayout`.

Several folders are one experiment run with different seeds: their settings must agree except `seed`.
A report of some arms only (`arms`) reads each folder as if it had run those arms alone, so an `imm compare`
folder's `self_improve` and `imm` join the same seeds' `imm run` folders; its importance measures are then
those every folder computed. A run still in progress is read as far as it got (the loop refreshes its report
after every iteration).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from imm.arms import Arm
from imm.config import RunConfig, experiment_settings, plain
from imm.errors import UserError
from imm.layout import FINETUNED, GENERATOR, MERGED, RunLayout, eval_samples, read_jsonl
from imm.report.summary import SummaryRow, collect


def theta_model(arm: Arm, t: int) -> str:
    """The file name of an arm's θ_t: θ0 at t = 0, the merge where the arm merges, else F_t."""
    return GENERATOR if t == 0 else MERGED if arm.merges else FINETUNED


@dataclass
class Run:
    root: Path
    cfg: RunConfig
    rows: list[SummaryRow]
    _answers: dict = field(default_factory=dict, repr=False)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """(task, domain) in the config's order: in-domain first."""
        return ([(s.partition("=")[0], "id") for s in self.cfg.data.id_tasks]
                + [(s.partition("=")[0], "ood") for s in self.cfg.data.ood_tasks])

    @property
    def arms(self) -> list[str]:
        return list(self.cfg.arms)

    def iterations(self, arm: str) -> list[int]:
        """1..t of the iterations whose θ_t has been evaluated."""
        return sorted({r.iteration for r in self.rows if r.arm == arm and r.iteration > 0
                       and r.model == theta_model(self.cfg.arm(arm), r.iteration)})

    def value(self, arm: str, t: int, model: str, task: str, metric: str) -> float | None:
        return self._values.get((arm, t, model, task, metric))

    @cached_property
    def _values(self) -> dict[tuple, float]:
        return {(r.arm, r.iteration, r.model, r.task, r.metric): r.value for r in self.rows}

    def greedy(self, arm: str, t: int, task: str) -> dict[str, dict]:
        """θ_t's greedy answer rows on `task`, by problem id (θ0 at t = 0); empty where not written."""
        key = (arm, t)
        if key not in self._answers:
            model = theta_model(self.cfg.arm(arm), t)
            path = eval_samples(self.layout.reference_evaluation(GENERATOR) if t == 0
                                else self.layout.evaluation(arm, t, model))
            rows = read_jsonl(path) if path.exists() else []
            by_task: dict[str, dict[str, dict]] = {}
            for index, row in enumerate(r for r in rows if r.get("sample") == "greedy"):
                by_task.setdefault(row["task"], {})[str(row.get("id", index))] = row
            self._answers[key] = by_task
        return self._answers[key].get(task, {})

    @cached_property
    def timings(self) -> list[dict]:
        path = self.layout.timings
        return read_jsonl(path) if path.exists() else []

    def table(self, arm: str, t: int, name: str) -> list[dict]:
        """One of the iteration's analysis tables (layers.csv, importance.csv) as rows; empty if absent."""
        path = self.layout.analysis(arm, t) / name
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def superficiality(self, arm: str, t: int) -> dict:
        path = self.layout.analysis(arm, t) / "superficiality.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def dataset_stats(self, arm: str, t: int) -> dict:
        """D_t's counts (samples, correct, questions_solved, kept); empty where not written."""
        path = self.layout.dataset_stats(arm, t)
        return json.loads(path.read_text()) if path.exists() else {}

    def training_log(self, arm: str, t: int) -> list[dict]:
        path = self.layout.training_log(arm, t)
        return read_jsonl(path) if path.exists() else []


def load_run(path: Path) -> Run:
    """A run folder as written by `imm run`, or one line saying why it is not one."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass a run folder written by `imm run` (e.g. runs/default)")
    cfg = RunLayout(root).saved().config
    cfg = dataclasses.replace(cfg, out_dir=str(root.parent), name=root.name)  # wherever the folder now is
    rows = collect(cfg)
    if not rows:
        raise UserError(f"{root} holds no evaluation yet; report it once θ0 has been evaluated")
    return Run(root, cfg, rows)


def load_runs(paths: list[Path], arms: tuple[str, ...] = ()) -> list[Run]:
    """Several runs of one experiment (seeds): every setting but the seed must agree. With `arms`, each run
    is read as its runs of those arms alone (`only_arms`)."""
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise UserError("a run folder is listed twice; list each run once")
    runs = [load_run(p) for p in paths]
    runs = only_arms(runs, arms) if arms else runs
    first = _comparable(runs[0].cfg)
    for run in runs[1:]:
        other = _comparable(run.cfg)
        if changed := sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k)):
            raise UserError(f"{run.root} is another experiment than {runs[0].root} ({changed[0]}: "
                            f"{plain(first.get(changed[0]))!r} vs {plain(other.get(changed[0]))!r}); report runs "
                            f"that differ only by seed together, or some arms of them with --arms")
    if len({run.cfg.seed for run in runs}) != len(runs):
        raise UserError("two run folders have the same seed; report runs of different seeds together")
    return runs


def only_arms(runs: list[Run], arms: tuple[str, ...]) -> list[Run]:
    """Each run as if it had run `arms` alone: its other arms, their merge blocks and summary rows left out,
    and the importance measures cut to those every run computed (in the first run's order)."""
    if len(set(arms)) != len(arms):
        raise UserError(f"--arms lists an arm twice: {', '.join(arms)}; list each once")
    for run in runs:
        if missing := [a for a in arms if a not in run.cfg.arms]:
            raise UserError(f"{run.root} has no arm {missing[0]!r} (its arms: {', '.join(run.cfg.arms)}); "
                            f"pass --arms with arms every run has")
    common = [k for k in runs[0].cfg.analysis.importance if all(k in r.cfg.analysis.importance for r in runs)]
    found = []
    for run in runs:
        cfg = dataclasses.replace(run.cfg, arms=tuple(arms),
                                  merge_arms={k: v for k, v in run.cfg.merge_arms.items() if k in arms},
                                  analysis=dataclasses.replace(run.cfg.analysis, importance=tuple(common)))
        found.append(Run(run.root, cfg, [r for r in run.rows if r.arm in arms]))
    return found


def _comparable(cfg: RunConfig) -> dict:
    return {k: v for k, v in experiment_settings(cfg).items() if k not in ("seed", "seeds")}
