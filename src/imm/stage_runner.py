"""How `imm run` schedules the loop's stages (imm.loop says what they are): once each, shared, at once, resumed.

- **Resume.** Every stage writes its output atomically and is skipped when that output exists, so re-running
  the same command after an interruption continues where it stopped (`open_run` checks and locks the folder).
- **Shared.** What two arms compute alike (same inputs, same seeds: imm.arms.shared_stages) is computed by
  the first and hard-linked into the other's folder.
- **At once.** An iteration's independent F_t train at once on a CPU, each in a forked process with a share
  of the threads (imm.side_by_side: the same weights, sooner).
Every stage that ran leaves a line in timings.jsonl: its wall time, peak memory and how many ran at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from imm import side_by_side as concurrent
from imm.arms import Arm, NextGenerator, Source, Stage, shared_stages
from imm.config import InitFrom, RunConfig
from imm.errors import UserError
from imm.layout import FINETUNED, GENERATOR, MERGED, TEACHER, RunLayout, check_run_dir, write_run_config
from imm.merging.merge_back import fine_tunes
from imm.models import LoadPolicy, check_checkpoint_matches_config, fetch_model, load_policy
from imm.outputs import remove_written
from imm.run_lock import RunLock
from imm.stage_memory import StageMemory


# Common random numbers: every evaluation (θ0's, and every F_t and θ_t at every iteration) draws its sampled
# answers (the collapse figures) from iteration 0's seed, so identical weights give identical figures.
EVAL = "eval"


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    """One seed per (run seed, iteration, stage), the same in every arm: arms differ only by their record."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{iteration}/{stage}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Models:
    """Where the run found θ0 and the teacher (a hub id's local copy), before anything was written."""

    base: Path
    teacher: Path | None = None


@contextmanager
def open_run(cfg: RunConfig, restart: bool) -> Iterator[tuple[RunLayout, Models]]:
    """The run folder checked (before the lock file is made inside it), its models found, the folder locked for
    this process alone and its config.yaml written; with `restart` the old run deleted first."""
    layout = RunLayout(cfg.run_dir)
    check_run_dir(layout, restart)
    resolved = {"base": fetch_model(cfg.model.base)}  # hub ids become local folders once, before anything is written
    if any(cfg.arm(name).samples_from is Source.TEACHER for name in cfg.arms):
        resolved["teacher"] = fetch_model(cfg.model.teacher)
    policy = LoadPolicy(cfg.model.allow_pickle, cfg.model.trust_remote_code)
    with load_policy(policy):  # θ0 and the teacher are what their config.json say, before any work
        for model in resolved.values():
            check_checkpoint_matches_config(model.folder)
    with RunLock(layout.lock) as lock, load_policy(policy):  # one writer per run folder
        write_run_config(cfg, layout, restart, resolved)
        if restart:  # --restart deleted the folder with its lock file: lock the new one
            lock.release()
            lock.acquire()
        yield layout, Models(resolved["base"].folder, resolved["teacher"].folder if "teacher" in resolved else None)


@dataclass(frozen=True)
class Step:
    """Runs the stages of one arm's iteration: skips what is done, links what another arm computed alike."""

    cfg: RunConfig
    layout: RunLayout
    arm: Arm | None  # None for the reference models of iteration 0
    t: int
    at_once: int = 1  # stages running at the same time as this one, itself included (imm.side_by_side)

    def __call__(self, name: Stage, work: Callable[[], str], output: Path, shared: Stage | None = None) -> None:
        who = self.arm.name if self.arm else "reference"
        tag = f"[{who} t={self.t}] {name:<9}"
        if output.exists():
            print(f"{tag} done before, kept ({output.name})", flush=True)
            return
        if shared and (other := self.computed_by_another_arm(shared)):
            for src, dst in zip(self.layout.stage_files(shared, other, self.t),
                                self.layout.stage_files(shared, self.arm.name, self.t)):
                link(src, dst)
            print(f"{tag} shared with {other} (same inputs and seeds)", flush=True)
            return
        started = time.perf_counter()
        try:
            with StageMemory() as memory:  # its peak memory; on leaving, what it left is freed
                message = work() or ""
        except UserError as err:  # say where the run stopped: the arm, the iteration and the stage
            raise UserError(f"{who} iteration {self.t}, {name}: {err}") from None
        seconds = time.perf_counter() - started
        print(f"{tag} {message} ({seconds:.1f}s)", flush=True)
        with open(self.layout.timings, "a") as f:
            f.write(json.dumps({"arm": who, "iteration": self.t, "stage": name,
                                "seconds": round(seconds, 3), "at_once": self.at_once, **memory.record()}) + "\n")

    def shares(self, stage: Stage, other: Arm) -> bool:
        """Whether arm `other` computes this arm's `stage` alike at this iteration."""
        return other.name != self.arm.name and stage in shared_stages(
            self.arm, other, self.t, self.cfg.finetune.init_from is InitFrom.BASE)

    def computed_by_another_arm(self, stage: Stage) -> str | None:
        for other in self.cfg.arms:
            if self.shares(stage, self.cfg.arm(other)) and self.layout.stage_files(stage, other, self.t)[-1].exists():
                return other
        return None


def link(src: Path, dst: Path) -> None:
    """Hard-link `src` (a file or a folder's files) to `dst`, appearing whole or not at all."""
    if dst.exists() or not src.exists():
        return
    tmp = dst.with_name(f".{dst.name}.tmp-link")
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_written(tmp)
    shutil.copytree(src, tmp, copy_function=os.link) if src.is_dir() else os.link(src, tmp)
    os.replace(tmp, dst)


@dataclass(frozen=True)
class StageCall:
    """One stage of one arm's iteration, as `Step` runs it, kept to run later (or at once with others)."""

    step: Step
    name: Stage
    work: Callable[[], str]
    output: Path
    shared: Stage | None = None

    def __call__(self) -> None:
        self.step(self.name, self.work, self.output, self.shared)

    def pending(self) -> bool:
        """Whether it needs computing: not done before, and not computed alike by another arm."""
        return not self.output.exists() and not (self.shared and self.step.computed_by_another_arm(self.shared))

    def alike(self, other: StageCall) -> bool:
        """Whether `other` computes what this computes (the same stage, inputs and seeds in another arm)."""
        return bool(self.shared) and self.shared == other.shared and self.step.shares(self.shared, other.step.arm)


def run_at_once(t: int, calls: list[StageCall], side_by_side: bool) -> None:
    """Every call; where `side_by_side` and several need computing, those at once (one forked process each,
    imm.side_by_side); the others are kept, or linked from the arm that computed them."""
    todo: list[StageCall] = []
    for call in calls:
        if call.pending() and not any(call.alike(other) for other in todo):
            todo.append(call)
    lanes = concurrent.at_once(len(todo)) if side_by_side else 1
    if lanes < 2:
        todo = []
    else:
        arms = ", ".join(dict.fromkeys(call.step.arm.name for call in todo))
        print(f"[t={t}] {len(todo)} fine-tunes ({arms}), {lanes} at once, a share of the CPU threads each", flush=True)
        concurrent.side_by_side([dataclasses.replace(call, step=dataclasses.replace(call.step, at_once=lanes))
                                 for call in todo])
    for call in calls:
        if not any(call is done for done in todo):
            call()


@dataclass(frozen=True)
class ArmIteration:
    """Iteration t of one arm, from its generator G."""

    arm: Arm
    t: int
    generator: Path  # G


class Runner:
    """The loop's stages for every arm of one iteration at a time, each stage skipped, linked or run (`Step`)."""

    def __init__(self, cfg: RunConfig, layout: RunLayout, stages, models: Models):
        self.cfg, self.layout, self.stages, self.models = cfg, layout, stages, models
        self.arms = [cfg.arm(name) for name in cfg.arms]

    def step(self, it: ArmIteration | None) -> Step:
        return Step(self.cfg, self.layout, it.arm if it else None, it.t if it else 0)

    def seed(self, t: int, stage: str) -> int:
        return stage_seed(self.cfg.seed, t, stage)

    def evaluate_references(self) -> None:
        """θ0 (and the teacher) evaluated once: iteration 0 of every arm."""
        references = {GENERATOR: self.models.base, **({TEACHER: self.models.teacher} if self.models.teacher else {})}
        for name, model in references.items():
            out = self.layout.reference_evaluation(name)
            self.step(None)(Stage.EVALUATE, lambda: self.stages.evaluate(model, self.seed(0, EVAL), out), out)

    def iteration(self, t: int) -> list[ArmIteration]:
        """Each arm's iteration t from its G: θ0 at t = 1, else the model its iteration t − 1 handed on."""
        return [ArmIteration(arm, t, self.generator(arm, t)) for arm in self.arms]

    def generator(self, arm: Arm, t: int) -> Path:
        if t == 1:
            return self.models.base
        theta = arm.merges and arm.next_generator is NextGenerator.THETA
        return self.layout.model(arm.name, t - 1, MERGED if theta else FINETUNED)

    def sample(self, arms: list[ArmIteration]) -> None:
        for it in arms:
            writer = self.models.teacher if it.arm.samples_from is Source.TEACHER else it.generator
            out = self.layout.samples(it.arm.name, it.t)
            self.step(it)(Stage.SAMPLE, lambda: self.stages.sample(writer, self.seed(it.t, "sample"), out), out,
                          shared=Stage.SAMPLE)

    def verify(self, arms: list[ArmIteration]) -> None:
        for it in arms:
            a, t, layout = it.arm.name, it.t, self.layout
            self.step(it)(Stage.VERIFY, lambda: self.stages.verify(layout.samples(a, t), layout.dataset_stats(a, t),
                                                                   layout.dataset(a, t)),
                          layout.dataset(a, t), shared=Stage.VERIFY)

    def finetune(self, arms: list[ArmIteration]) -> None:
        """Every arm's F_t (and model_stock's second), the independent ones at once where they can be."""
        t = arms[0].t if arms else 0
        run_at_once(t, [call for it in arms for call in self.finetunes(it)], self.stages.side_by_side)

    def finetunes(self, it: ArmIteration) -> list[StageCall]:
        """F_t, and model_stock's second F_t (same data and init, another seed)."""
        a, t, layout, stages = it.arm.name, it.t, self.layout, self.stages
        init = self.init(it)
        calls = [StageCall(self.step(it), Stage.FINETUNE, lambda: stages.finetune(
            init, layout.dataset(a, t), self.seed(t, "finetune"), layout.finetune_stats(a, t), layout.finetuned(a, t)),
            layout.finetuned(a, t), shared=Stage.FINETUNE)]
        if it.arm.merges and fine_tunes(self.cfg.merge_block(a)) > 1:
            second, stats = layout.second_finetuned(a, t), layout.second_finetune_stats(a, t)

            def train_second() -> str:
                stats.parent.mkdir(parents=True, exist_ok=True)
                return stages.finetune(init, layout.dataset(a, t), self.seed(t, "finetune-2"), stats, second)

            calls.append(StageCall(self.step(it), Stage.FINETUNE, train_second, second))
        return calls

    def init(self, it: ArmIteration) -> Path:
        """Where F_t starts: G (paper code) or θ0."""
        return it.generator if self.cfg.finetune.init_from is InitFrom.GENERATOR else self.models.base

    def merge(self, arms: list[ArmIteration]) -> None:
        for it in (it for it in arms if it.arm.merges):
            a, t = it.arm.name, it.t
            finetunes = [call.output for call in self.finetunes(it)]
            self.step(it)(Stage.MERGE, lambda: self.stages.merge(a, self.models.base, finetunes, self.seed(t, "merge"),
                                                                 self.layout.merged(a, t), self.init(it)),
                          self.layout.merged(a, t))

    def evaluate(self, arms: list[ArmIteration]) -> None:
        """F_t where the arm evaluates it (every arm at t = 1), and θ_t where the arm merges."""
        for it in arms:
            models = [FINETUNED] if it.arm.evaluates_finetuned or it.t == 1 else []
            for model in models + ([MERGED] if it.arm.merges else []):
                out, path = self.layout.evaluation(it.arm.name, it.t, model), self.layout.model(it.arm.name, it.t, model)
                self.step(it)(Stage.EVALUATE, lambda: self.stages.evaluate(path, self.seed(0, EVAL), out), out,
                              shared=Stage.EVALUATE if model == FINETUNED else None)

    def analyse(self, arms: list[ArmIteration]) -> None:
        for it in arms if self.cfg.analysis.enabled else ():
            self.step(it)(Stage.ANALYSE, lambda: self.stages.analyse(it.arm.name, it.t),
                          self.layout.analysis(it.arm.name, it.t))
