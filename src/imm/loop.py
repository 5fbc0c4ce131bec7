"""`imm run`: self-improvement, distillation and Iterative Model Merging side by side (METHOD.md §2).

    imm run [--config NAME|PATH] [KEY=VALUE ...] [--restart]

    θ0 = original model; G = θ0
    for t = 1..T:
        S_t = sample(G or the teacher)  K chain-of-thought answers per training question
        D_t = verify(S_t)               keep the answers whose final answer checks out
        F_t = finetune(init, D_t)       init = G (paper code) or θ0
        θ_t = θ0 + λ·M(F_t − θ0)        merging arms; the others take θ_t = F_t
        G   = θ_t
        evaluate F_t and θ_t; analyse their layers

Each arm (imm.arms) says where S_t comes from and whether it merges. The arms go through the
iterations together: every arm's S_t and D_t, then their F_t, which on a CPU train at once where they are
independent (imm.side_by_side: the same weights, sooner), then every arm's θ_t, evaluations and analysis.
This module only orchestrates: the stages live in their pipeline modules and every path in `RunLayout`.
Every stage writes its output atomically and is skipped when that output exists, so re-running the same
command after an interruption continues where it stopped. What two arms compute alike (same inputs, same
seeds) is computed once and linked.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from imm import report
from imm.arms import Arm, NextGenerator, Source, shared_stages
from imm.models import LoadPolicy, ResolvedModel, fetch_model, load_policy
from imm.config import RunConfig, experiment_settings, from_dict, load_config, per_seed, seeds_report_dir, to_dict
from imm.errors import UserError
from imm.merging.merge_back import fine_tunes
from imm.layout import FINETUNED, GENERATOR, MERGED, RUN_ENTRIES, TEACHER, RunLayout, training_log
from imm.outputs import atomic_write_text, is_temporary, remove_written
from imm.run_lock import RunLock
from imm.stage_memory import StageMemory


EVAL = "eval"  # the evaluation stage's seed name (common random numbers: the same at every iteration)


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    """One seed per (run seed, iteration, stage), the same in every arm: arms differ only by their record."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{iteration}/{stage}".encode()).digest()[:4], "big")


@dataclass(frozen=True)
class Stages:
    """The loop's steps, each writing its output path (the last argument). `real_stages` binds the
    pipeline modules to a run config; tests pass stand-ins to check the loop's wiring."""

    sample: Callable[[Path, int, Path], str]  # (writer, seed, samples.jsonl)
    verify: Callable[[Path, Path, Path], str]  # (samples.jsonl, dataset_stats.json, dataset.jsonl)
    finetune: Callable[[Path, Path, int, Path, Path], str]  # (init, dataset.jsonl, seed, finetune_stats.json, F_t)
    merge: Callable[[str, Path, list[Path], int, Path], str]  # (arm, θ0, [F_t, ...], seed, θ_t)
    evaluate: Callable[[Path, int, Path], str]  # (model, seed, eval/<model>.json)
    analyse: Callable[[str, int], str]  # (arm, t): tables into the iteration's analysis/
    report: Callable[..., None] = lambda final=False: None  # refresh summary.csv and report/ (report.Refresher)
    side_by_side: bool = False  # an iteration's independent fine-tunes train at once, in forked processes


def real_stages(cfg: RunConfig, layout: RunLayout, base: Path) -> Stages:
    from imm.evaluation.suite import evaluate_on_run_tasks
    from imm.finetune import finetune_checkpoint
    from imm.merging.merge_back import merge_back
    from imm.sampling import read_samples, sample_questions
    from imm.verify.training_set import build_training_set, read_training_set

    if cfg.analysis.enabled:  # before any model is loaded: the probe must not see a sampled problem
        from imm.analysis.importance import check_probe_unsampled

        check_probe_unsampled(cfg.analysis.probe_task, cfg.analysis.probe_size, cfg.data.train_task,
                              cfg.data.train_questions)

    def base_importance(kind: str) -> list[float]:  # θ0's, per block: what imm_layerwise reads
        from imm.analysis.importance_cache import cached_importance

        a = cfg.analysis
        values = cached_importance(base, [kind], layout.importance_cache, probe_task=a.probe_task,
                                   probe_size=a.probe_size, max_new_tokens=cfg.eval.max_new_tokens,
                                   device=cfg.model.device, prompt=cfg.prompt)[kind].values
        return [values[layer] for layer in sorted(values)]

    def analyse(arm: str, t: int) -> str:
        from imm.analysis import analyze_iteration

        a = cfg.analysis
        analyze_iteration(layout.root, arm, t, base=base, probe_task=a.probe_task, probe_size=a.probe_size,
                          importance=a.importance, max_new_tokens=cfg.eval.max_new_tokens, device=cfg.model.device,
                          prompt=cfg.prompt)
        return "layers.csv, importance.csv, superficiality.json"

    return Stages(
        sample=lambda writer, seed, out: sample_questions(writer, cfg.data, cfg.prompt, cfg.sampling, cfg.model, seed, out),
        verify=lambda samples, stats, out: build_training_set(cfg.filter, read_samples(samples), out, stats),
        finetune=lambda init, dataset, seed, stats, out: finetune_checkpoint(
            init, read_training_set(dataset), cfg.finetune, out, stats, seed=seed, device=cfg.model.device,
            log_out=training_log(stats)),
        merge=lambda arm, theta0, finetuned, seed, out: merge_back(theta0, finetuned, out, cfg.merge_block(arm), seed,
                                                                   importance=base_importance),
        evaluate=lambda model, seed, out: evaluate_on_run_tasks(
            model, cfg.data, cfg.prompt, cfg.eval, cfg.model, cfg.sampling, seed, out),
        analyse=analyse,
        report=report.Refresher(layout.root),
        side_by_side=trains_side_by_side(cfg),
    )


def trains_side_by_side(cfg: RunConfig) -> bool:
    """finetune.side_by_side, where it can be: on a CPU, one training process per F_t (with one torch thread
    `train` runs them one after the other all the same)."""
    from imm.models import pick_device

    f = cfg.finetune
    return f.side_by_side and pick_device(cfg.model.device) == "cpu" and f.processes == 1 and not f.accelerate_config


# --- one stage -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """Runs the stages of one arm's iteration: skips what is done, links what another arm computed alike."""

    cfg: RunConfig
    layout: RunLayout
    arm: Arm | None  # None for the reference models of iteration 0
    t: int
    at_once: int = 1  # stages running at the same time as this one, itself included (imm.side_by_side)

    def __call__(self, name: str, work: Callable[[], str], output: Path, shared: str | None = None) -> None:
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

    def computed_by_another_arm(self, stage: str) -> str | None:
        for other in self.cfg.arms:
            if other != self.arm.name and stage in shared_stages(self.arm, self.cfg.arm(other), self.t,
                                                                 self.cfg.finetune.init_from == "base"):
                if self.layout.stage_files(stage, other, self.t)[-1].exists():
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


# --- the loop --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageCall:
    """One stage of one arm's iteration, as `Step` runs it."""

    step: Step
    name: str
    work: Callable[[], str]
    output: Path
    shared: str | None = None

    def __call__(self) -> None:
        self.step(self.name, self.work, self.output, self.shared)

    def pending(self) -> bool:
        """Whether it needs computing: not done before, and not computed alike by another arm."""
        return not self.output.exists() and not (self.shared and self.step.computed_by_another_arm(self.shared))

    def alike(self, other: StageCall) -> bool:
        """Whether `other` computes what this computes (the same stage, inputs and seeds in another arm)."""
        return bool(self.shared) and self.shared == other.shared and other.step.arm.name != self.step.arm.name and \
            self.shared in shared_stages(self.step.arm, other.step.arm, self.step.t,
                                         self.step.cfg.finetune.init_from == "base")


@dataclass(frozen=True)
class ArmIteration:
    """Iteration t of one arm, from its generator G, in the loop's three phases."""

    cfg: RunConfig
    layout: RunLayout
    stages: Stages
    arm: Arm
    t: int
    base: Path  # θ0
    teacher: Path | None
    generator: Path  # G

    @property
    def step(self) -> Step:
        return Step(self.cfg, self.layout, self.arm, self.t)

    def seed(self, stage: str) -> int:
        """The evaluation's seed is iteration 0's, θ0's: every model's sampled evaluation (the diversity samples)
        draws from the same random numbers per question, so identical weights give identical figures."""
        return stage_seed(self.cfg.seed, 0 if stage == EVAL else self.t, stage)

    def sample_and_verify(self) -> None:
        a, t, layout, stages, step = self.arm.name, self.t, self.layout, self.stages, self.step
        writer = self.teacher if self.arm.samples_from is Source.TEACHER else self.generator
        step("sample", lambda: stages.sample(writer, self.seed("sample"), layout.samples(a, t)),
             layout.samples(a, t), shared="sample")  # S_t
        step("verify", lambda: stages.verify(layout.samples(a, t), layout.dataset_stats(a, t), layout.dataset(a, t)),
             layout.dataset(a, t), shared="verify")  # D_t

    def finetunes(self) -> list[StageCall]:
        """F_t, and model_stock's second F_t (same data and init, another seed)."""
        a, t, layout, stages, step = self.arm.name, self.t, self.layout, self.stages, self.step
        init = self.generator if self.cfg.finetune.init_from == "generator" else self.base
        calls = [StageCall(step, "finetune", lambda: stages.finetune(init, layout.dataset(a, t), self.seed("finetune"),
                                                                    layout.finetune_stats(a, t), layout.finetuned(a, t)),
                           layout.finetuned(a, t), shared="finetune")]
        if self.arm.merges and fine_tunes(self.cfg.merge_block(a)) > 1:
            second, stats = layout.second_finetuned(a, t), layout.second_finetune_stats(a, t)

            def train_second() -> str:
                stats.parent.mkdir(parents=True, exist_ok=True)
                return stages.finetune(init, layout.dataset(a, t), self.seed("finetune-2"), stats, second)

            calls.append(StageCall(step, "finetune", train_second, second))
        return calls

    def merge_evaluate_analyse(self) -> Path:
        """θ_t (merging arms), the evaluations and the analysis; returns the next iteration's G."""
        a, t, layout, stages, step = self.arm.name, self.t, self.layout, self.stages, self.step
        models = [FINETUNED] if self.arm.evaluates_finetuned or t == 1 else []
        if self.arm.merges:
            finetunes = [call.output for call in self.finetunes()]
            step("merge", lambda: stages.merge(a, self.base, finetunes, self.seed("merge"), layout.merged(a, t)),
                 layout.merged(a, t))  # θ_t
            models.append(MERGED)
        for model in models:
            out = layout.evaluation(a, t, model)
            step("evaluate", lambda: stages.evaluate(layout.model(a, t, model), self.seed(EVAL), out), out,
                 shared="evaluate" if model == FINETUNED else None)
        if self.cfg.analysis.enabled:
            step("analyse", lambda: stages.analyse(a, t), layout.analysis(a, t))
        theta = self.arm.merges and self.arm.next_generator is NextGenerator.THETA
        return layout.model(a, t, MERGED if theta else FINETUNED)


def run_arms(cfg: RunConfig, layout: RunLayout, arms: list[Arm], stages: Stages, base: Path,
             teacher: Path | None) -> None:
    """Every arm, iteration by iteration: each arm's S_t and D_t, then their F_t (trained at once where
    `stages.side_by_side`), then each arm's θ_t, evaluations and analysis."""
    generators = {arm.name: base for arm in arms}  # G of each arm; θ0 at t = 1
    for t in range(1, cfg.iterations + 1):
        iterations = [ArmIteration(cfg, layout, stages, arm, t, base, teacher, generators[arm.name]) for arm in arms]
        for it in iterations:
            it.sample_and_verify()
        train(t, [call for it in iterations for call in it.finetunes()], stages.side_by_side)
        for it in iterations:
            generators[it.arm.name] = it.merge_evaluate_analyse()
        if t < cfg.iterations:  # a long run can be watched: its summary after every iteration, its report once a
            stages.report()     # minute; after the last one, the run's final refresh


def train(t: int, calls: list[StageCall], side_by_side: bool) -> None:
    """The fine-tunes of iteration t: where `side_by_side` and several need training, they train at once (one
    forked process each, imm.side_by_side); the others are kept, or linked from the arm that trained them."""
    from imm import side_by_side as concurrent

    trained: list[StageCall] = []
    for call in calls:
        if call.pending() and not any(call.alike(other) for other in trained):
            trained.append(call)
    lanes = concurrent.at_once(len(trained)) if side_by_side else 1
    if lanes < 2:
        trained = []
    else:
        arms = ", ".join(dict.fromkeys(call.step.arm.name for call in trained))
        print(f"[t={t}] {len(trained)} fine-tunes ({arms}), {lanes} at once, a share of the CPU threads each", flush=True)
        concurrent.side_by_side([dataclasses.replace(call, step=dataclasses.replace(call.step, at_once=lanes))
                                 for call in trained])
    for call in calls:
        if not any(call is done for done in trained):
            call()


def run_loop(cfg: RunConfig, restart: bool = False, stages: Stages | None = None) -> Path:
    layout = RunLayout(cfg.run_dir)
    check_run_dir(layout, restart)  # before the lock file is made inside it
    resolved = {"base": fetch_model(cfg.model.base)}  # hub ids become local folders once, before anything is written
    if any(cfg.arm(name).samples_from is Source.TEACHER for name in cfg.arms):
        resolved["teacher"] = fetch_model(cfg.model.teacher)
    policy = LoadPolicy(cfg.model.allow_pickle, cfg.model.trust_remote_code)
    with RunLock(layout.lock) as lock, load_policy(policy):  # one writer per run folder
        return _run_locked(cfg, layout, restart, stages, lock, resolved)


def _run_locked(cfg: RunConfig, layout: RunLayout, restart: bool, stages: Stages | None, lock: RunLock,
                resolved: dict[str, ResolvedModel]) -> Path:
    arms = [cfg.arm(name) for name in cfg.arms]
    prepare_run_dir(cfg, layout, restart, resolved)
    if restart:  # --restart deleted the folder with its lock file: lock the new one
        lock.release()
        lock.acquire()
    base, teacher = resolved["base"].folder, resolved["teacher"].folder if "teacher" in resolved else None
    stages = stages or real_stages(cfg, layout, base)
    started = time.perf_counter()
    references = {GENERATOR: base, **({TEACHER: teacher} if teacher is not None else {})}
    for name, model in references.items():  # θ0 (and the teacher): iteration 0 of every arm
        out = layout.reference_evaluation(name)
        Step(cfg, layout, None, 0)("evaluate", lambda: stages.evaluate(model, stage_seed(cfg.seed, 0, EVAL), out), out)
    run_arms(cfg, layout, arms, stages, base, teacher)
    rows = report.write_summary(cfg)
    print(report.format_table(rows, cfg))
    stages.report(final=True)
    print(f"run folder: {cfg.run_dir}  ({time.perf_counter() - started:.0f}s)")
    return cfg.run_dir


# --- the run folder --------------------------------------------------------------------------

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
        raw = yaml.safe_load(layout.config.read_text()) or {}
        raw.pop("resolved", None)
        saved = from_dict(RunConfig, raw)
    except (UserError, yaml.YAMLError, TypeError, AttributeError):
        saved = None
    old, new = (experiment_settings(saved) if saved else {}), experiment_settings(cfg)
    changed = sorted(k for k in new if old.get(k, object()) != new[k])
    if changed:
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  as config.yaml writes it
        shown = ", ".join(f"{k} ({plain(old.get(k, '?'))} -> {plain(new[k])})" for k in changed[:3])
        raise UserError(f"{cfg.run_dir} holds a run with other settings: {shown}; resume it with the same settings, "
                        f"pass --restart to start over, or choose another name=...")


def prepare_run_dir(cfg: RunConfig, layout: RunLayout, restart: bool,
                    resolved: dict[str, ResolvedModel] | None = None) -> None:
    """Write the resolved config (and where each model was found) before any work; refuse to resume a
    folder made for another experiment."""
    check_run_dir(layout, restart)
    if restart and layout.root.exists():
        remove_written(layout.root, run_entries=RUN_ENTRIES)
    if layout.config.exists():
        check_resumable(cfg, layout)
    record = {name: {"spec": m.spec, "folder": str(m.folder), "revision": m.revision} for name, m in (resolved or {}).items()}
    atomic_write_text(layout.config, yaml.safe_dump({**to_dict(cfg), "resolved": record}, sort_keys=False))
    for leftover in [p for p in layout.root.rglob(".*") if is_temporary(p)]:
        remove_written(leftover)  # from a killed run


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="a shipped config (default, gentle, smoke) or a YAML path")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. sampling.k=8")
    parser.add_argument("--restart", action="store_true", help="delete the run folder (only an imm run) and start over")


def main(args: argparse.Namespace) -> int:
    import torch

    cfg = load_config(args.config, tuple(args.overrides))
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    runs = [run_loop(c, args.restart) for c in per_seed(cfg)]  # seeds=[...]: one sibling run folder per seed
    if len(runs) > 1:
        print(f"seeds reported together: {report.write_runs(runs, seeds_report_dir(cfg))}")
    return 0
