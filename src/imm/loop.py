"""`imm run`: self-improvement, distillation and Iterative Model Merging side by side (docs/method.md §2).

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
iterations together: every arm's S_t, then every D_t, F_t, θ_t, evaluation and analysis. `run_loop` is
that loop, one line per arrow; `real_stages` binds each stage to its pipeline module; every path is
`RunLayout`'s. How the stages are scheduled lives in imm.stage_runner: a stage whose output exists is
skipped (re-running the same command after an interruption continues where it stopped), what two arms
compute alike is computed once and linked, and an iteration's independent F_t train at once on a CPU.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imm import report
from imm.analysis import analyze_iteration
from imm.analysis.importance import probe_overlap
from imm.analysis.importance_cache import cached_importance
from imm.config import RunConfig, per_seed, seeds_report_dir
from imm.evaluation.suite import evaluate_on_run_tasks
from imm.finetune_launch import finetune_checkpoint
from imm.layout import RunLayout, training_log
from imm.merging.merge_back import merge_back
from imm.models import checkpoint_dtype, pick_device
from imm.outputs import check_output_dir
from imm.preflight import load_config
from imm.sampling import read_samples, sample_questions
from imm.stage_runner import Runner, open_run
from imm.verify.training_set import build_training_set, read_training_set, student_prompter


@dataclass(frozen=True)
class Stages:
    """The loop's steps, each writing its output path (the last argument). `real_stages` binds the
    pipeline modules to a run config; tests pass stand-ins to check the loop's wiring."""

    sample: Callable[[Path, int, Path], str]  # (writer, seed, samples.jsonl)
    verify: Callable[[Path, Path, Path], str]  # (samples.jsonl, dataset_stats.json, dataset.jsonl)
    finetune: Callable[[Path, Path, int, Path, Path], str]  # (init, dataset.jsonl, seed, finetune_stats.json, F_t)
    merge: Callable[[str, Path, list[Path], int, Path, Path], str]  # (arm, θ0, [F_t, ...], seed, θ_t, init of F_t)
    evaluate: Callable[[Path, int, Path], str]  # (model, seed, eval/<model>.json)
    analyse: Callable[[str, int], str]  # (arm, t): tables into the iteration's analysis/
    report: Callable[..., None] = lambda final=False: None  # refresh summary.csv and report/ (report.Refresher)
    side_by_side: bool = False  # an iteration's independent fine-tunes train at once, in forked processes


def real_stages(cfg: RunConfig, layout: RunLayout, base: Path) -> Stages:
    a = cfg.analysis
    if a.enabled and (shared := probe_overlap(a.probe_task, a.probe_size, cfg.data.train_task, cfg.data.train_questions)):
        print(f"warning: {shared} of the {a.probe_size} importance probe problems are also sampled training questions "
              f"(never scored ones); lower data.train_questions by {shared} to keep them apart", flush=True)

    def base_importance(kind: str) -> list[float]:  # θ0's, per block: what imm_layerwise reads
        a = cfg.analysis
        values = cached_importance(base, [kind], layout.importance_cache, probe_task=a.probe_task,
                                   probe_size=a.probe_size, max_new_tokens=cfg.eval.max_new_tokens,
                                   device=cfg.model.device, prompt=cfg.prompt, max_length=cfg.finetune.max_length)[kind].values
        return [values[layer] for layer in sorted(values)]

    saved = checkpoint_dtype(cfg.model.checkpoint_dtype, base)  # F_t and θ_t: θ0's dtype unless asked

    def analyse(arm: str, t: int) -> str:
        a = cfg.analysis
        analyze_iteration(layout.root, arm, t, base=base, probe_task=a.probe_task, probe_size=a.probe_size,
                          importance=a.importance, max_new_tokens=cfg.eval.max_new_tokens, device=cfg.model.device,
                          prompt=cfg.prompt, max_length=cfg.finetune.max_length)
        return "layers.csv, importance.csv, superficiality.json"

    return Stages(
        sample=lambda writer, seed, out: sample_questions(writer, cfg.data, cfg.prompt, cfg.sampling, cfg.model, seed, out),
        verify=lambda samples, stats, out: build_training_set(
            cfg.filter, read_samples(samples), out, stats, student_prompter(cfg.data, cfg.prompt, cfg.finetune, base)),
        finetune=lambda init, dataset, seed, stats, out: finetune_checkpoint(
            init, read_training_set(dataset), cfg.finetune, out, stats, seed=seed, device=cfg.model.device,
            log_out=training_log(stats), dtype=saved),
        merge=lambda arm, theta0, finetuned, seed, out, init: merge_back(
            theta0, finetuned, out, cfg.merge_block(arm), seed, importance=base_importance, out_dtype=saved,
            start=init),
        evaluate=lambda model, seed, out: evaluate_on_run_tasks(
            model, cfg.data, cfg.prompt, cfg.eval, cfg.model, cfg.sampling, seed, out),
        analyse=analyse,
        report=report.Refresher(layout.root),
        side_by_side=trains_side_by_side(cfg),
    )


def trains_side_by_side(cfg: RunConfig) -> bool:
    """finetune.side_by_side, where it can be: on a CPU, one training process per F_t (with one torch thread
    the runner trains them one after the other all the same)."""
    f = cfg.finetune
    return f.side_by_side and pick_device(cfg.model.device) == "cpu" and f.processes == 1 and not f.accelerate_config


def run_loop(cfg: RunConfig, restart: bool = False, stages: Stages | None = None) -> Path:
    """docs/method.md §2 for every arm at once, one line per arrow; imm.stage_runner skips what is done, links what
    arms share and trains an iteration's independent fine-tunes at once."""
    started = time.perf_counter()
    with open_run(cfg, restart) as (layout, models):  # checked, locked, config.yaml written; θ0 and the teacher found
        stages = stages or real_stages(cfg, layout, models.base)
        run = Runner(cfg, layout, stages, models)
        run.evaluate_references()  # θ0 (and the teacher): iteration 0 of every arm
        for t in range(1, cfg.iterations + 1):
            arms = run.iteration(t)  # each arm's G = θ_{t−1} (θ0 at t = 1; F_{t−1} where the arm does not merge)
            run.sample(arms)  # S_t: K answers per training question, from G or the teacher
            run.verify(arms)  # D_t: the answers whose final answer checks out
            run.finetune(arms)  # F_t = fine-tune(G or θ0, D_t)
            run.merge(arms)  # θ_t = θ0 + λ·M(F_t − θ0) in the merging arms
            run.evaluate(arms)  # F_t and θ_t on the in-domain and out-of-domain tasks
            run.analyse(arms)  # where their updates landed, against θ0's layer importance
            if t < cfg.iterations:  # a long run can be watched: its summary after every iteration, its report
                stages.report()     # once a minute; after the last one, the run's final refresh
        rows = report.write_summary(cfg)
        print(report.format_table(rows, cfg))
        stages.report(final=True)
        print(f"run folder: {cfg.run_dir}  ({time.perf_counter() - started:.0f}s)")
    return cfg.run_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="a shipped config (default, gentle, smoke) or a YAML path")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. sampling.k=8")
    parser.add_argument("--restart", action="store_true", help="delete the run folder (only an imm run) and start over")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, tuple(args.overrides))
    run_experiment(cfg, args.restart)
    if cfg.seeds:
        print(f"seeds reported together: {seeds_report_dir(cfg) / report.INDEX}")
    return 0


def run_experiment(cfg: RunConfig, restart: bool = False) -> list[RunConfig]:
    """A checked config's runs (`imm run`, `imm compare`): one per seed of `seeds` (else the one run), then, with
    `seeds`, their report together in <out_dir>/<name>-seeds/, a folder checked before any work."""
    import torch

    runs = per_seed(cfg)
    if cfg.seeds:
        check_output_dir(seeds_report_dir(cfg), report.KIND, overwrite=True, inputs=[c.run_dir for c in runs])
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    for c in runs:
        run_loop(c, restart)
    if cfg.seeds:
        report.write_runs([c.run_dir for c in runs], seeds_report_dir(cfg))
    return runs
