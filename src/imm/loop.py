"""`imm run`: self-improvement and Iterative Model Merging side by side (METHOD.md §2).

    imm run [--config NAME|PATH] [KEY=VALUE ...] [--restart]

    θ0 = original model; G = θ0
    for t = 1..T:
        S_t = sample(G)                 K chain-of-thought answers per training question
        D_t = verify(S_t)               keep the answers whose final answer checks out
        F_t = finetune(init, D_t)       init = G (paper code) or θ0
        θ_t = θ0 + λ·M(F_t − θ0)        IMM arm only; the self_improve arm takes θ_t = F_t
        G   = θ_t
        evaluate F_t and θ_t; analyse their layers

Every stage writes its output atomically and is skipped when that output exists, so re-running
the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from imm import report
from imm.checkpoint import load_model, resolve_model_path, save_model
from imm.config import RunConfig, load_config, to_dict
from imm.errors import UserError
from imm.finetune import train
from imm.layout import RUN_ENTRIES, foreign_entries, iter_dir, read_jsonl
from imm.outputs import atomic_write_json, atomic_write_jsonl, atomic_write_text, is_temporary, remove_written
from imm.sampling import generate
from imm.tasks.registry import get_task
from imm.verify import steps_correct


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    """One seed per (run seed, iteration, stage), the same in every arm: arms differ only by the merge."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{iteration}/{stage}".encode()).digest()[:4], "big")


def log(arm: str, t: int, stage: str, message: str, started: float) -> None:
    print(f"[{arm} t={t}] {stage:<9} {message} ({time.perf_counter() - started:.1f}s)", flush=True)


# --- sample → verify -------------------------------------------------------------------------

def sample(cfg: RunConfig, generator: Path, out: Path, seed: int) -> None:
    """S_t: K completions per training question, each judged by the task's one checker."""
    task = get_task(cfg.data.train_task)
    problems = task.problems("train")[:cfg.data.train_questions]
    if not problems:
        raise UserError(f"task {cfg.data.train_task} has no training questions; pick another data.train_task")
    model, tokenizer = load_model(generator, device=cfg.model.device, dtype=cfg.model.dtype)
    s = cfg.sampling
    prompts = [task.prompt(p) for p in problems]
    completions = generate(model, tokenizer, prompts, k=s.k, temperature=s.temperature, top_p=s.top_p,
                           max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, stop=task.stop, seed=seed,
                           desc="sample")
    flat = [(problem, prompt, j, c) for problem, prompt, group in zip(problems, prompts, completions)
            for j, c in enumerate(group)]
    verdicts = task.check_many([c.text for *_, c in flat], [problem for problem, *_ in flat])
    rows = [{"id": problem.id, "sample": j, "prompt": prompt, "completion": c.text, "gold": problem.answer,
             "extracted": v.extracted, "correct": v.correct, "steps_correct": steps_correct(c.text),
             "num_tokens": c.num_tokens, "mean_entropy": c.mean_entropy}
            for (problem, prompt, j, c), v in zip(flat, verdicts)]
    atomic_write_jsonl(out, rows)


def select(cfg: RunConfig, samples: list[dict]) -> list[dict]:
    """D_t: the verified samples, optionally de-duplicated, step-checked and capped per question."""
    f, kept, per_question, seen = cfg.filter, [], {}, set()
    for row in samples:
        if not row["correct"] or (f.check_steps and not row["steps_correct"]):
            continue
        key = (row["id"], row["completion"].strip())
        if f.dedup and key in seen:
            continue
        if f.max_per_question and per_question.get(row["id"], 0) >= f.max_per_question:
            continue
        seen.add(key)
        per_question[row["id"]] = per_question.get(row["id"], 0) + 1
        kept.append({"id": row["id"], "prompt": row["prompt"], "response": " " + row["completion"].strip()})
    return kept


# --- fine-tune → merge -----------------------------------------------------------------------

def finetune(cfg: RunConfig, init: Path, dataset: list[dict], out: Path, seed: int) -> str:
    model, tokenizer = load_model(init, device=cfg.model.device, dtype="float32")
    if not dataset:
        save_model(model, tokenizer, out)
        return "no verified sample: F_t is a copy of its init (warning recorded)"
    stats = train(model, tokenizer, [(r["prompt"], r["response"]) for r in dataset], cfg.finetune, seed=seed)
    atomic_write_json(out.parent / "finetune_stats.json", stats)  # before the checkpoint, which marks done
    save_model(model, tokenizer, out)
    return f"{stats.examples} examples, {stats.steps} steps, loss {stats.final_loss:.3f}, {stats.tokens_per_s:,.0f} tok/s"


def merge_step(cfg: RunConfig, base: Path, finetuned: Path, out: Path, seed: int) -> str:
    """θ_t = θ0 + λ·M(F_t − θ0), anchored at the original θ0 [paper]."""
    from imm.merging import MergeSpec, merge

    spec = MergeSpec.from_dict({
        "merge_method": cfg.merge.method, "base_model": str(base), "dtype": "float32",
        "models": [{"model": str(finetuned), "parameters": {"weight": cfg.merge.weight, "density": cfg.merge.density}}],
    })
    merge(spec, out, seed=seed)
    return f"{cfg.merge.method}, weight {cfg.merge.weight}, density {cfg.merge.density}"


# --- evaluate --------------------------------------------------------------------------------

def evaluate_model(cfg: RunConfig, model_dir: Path, out: Path, seed: int) -> None:
    """Greedy accuracy on every ID and OOD task; pass@k and collapse metrics on ID test questions."""
    from imm.evaluation import evaluate

    model, tokenizer = load_model(model_dir, device=cfg.model.device, dtype=cfg.model.dtype)
    e, results, rows = cfg.eval, {}, []
    for domain, names in (("id", cfg.data.id_tasks), ("ood", cfg.data.ood_tasks)):
        for name in names:
            task = get_task(name)
            problems = task.problems("test")[:e.limit]
            r = evaluate(model, tokenizer, task, problems, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, seed=seed)
            results[task.name] = {"domain": domain, "n": r.n, "metrics": r.metrics}
            rows += r.rows
    if e.diversity_k:
        task = get_task(cfg.data.id_tasks[0])
        problems = task.problems("test")[:e.diversity_questions]
        r = evaluate(model, tokenizer, task, problems, k=e.diversity_k, temperature=e.diversity_temperature,
                     max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, seed=seed)
        results[f"{task.name}@diversity"] = {"domain": "id", "n": r.n, "metrics": r.metrics}
    atomic_write_jsonl(out.with_suffix(".samples.jsonl"), rows)
    atomic_write_json(out, results)


# --- the loop --------------------------------------------------------------------------------

def stage(output: Path, name: str, work, *, arm: str, t: int, run_dir: Path) -> None:
    """Run `work` unless `output` exists: a stage is done exactly when its output is there.
    Each stage that runs appends its wall time to run_dir/timings.jsonl (a log, not a result)."""
    if output.exists():
        print(f"[{arm} t={t}] {name:<9} done before, kept ({output.name})", flush=True)
        return
    started = time.perf_counter()
    log(arm, t, name, work() or "", started)
    with open(run_dir / "timings.jsonl", "a") as f:
        f.write(json.dumps({"arm": arm, "iteration": t, "stage": name, "seconds": round(time.perf_counter() - started, 3)}) + "\n")


def share_first_iteration(cfg: RunConfig, arm: str) -> None:
    """At t = 1 every arm samples from θ0 with the same seeds, so S_1, D_1 and F_1 are identical:
    link them from an arm that already has them instead of computing them again."""
    mine = iter_dir(cfg.run_dir, arm, 1)
    for other in cfg.arms:
        theirs = iter_dir(cfg.run_dir, other, 1)
        if other == arm or not (theirs / "eval" / "finetuned.json").exists():
            continue
        for name in ("samples.jsonl", "dataset.jsonl", "dataset_stats.json", "finetune_stats.json", "finetuned",
                     "eval/finetuned.json", "eval/finetuned.samples.jsonl"):
            src, dst = theirs / name, mine / name
            if src.exists() and not dst.exists():
                tmp = dst.with_name(f".{dst.name}.tmp-link")
                dst.parent.mkdir(parents=True, exist_ok=True)
                remove_written(tmp)
                shutil.copytree(src, tmp, copy_function=os.link) if src.is_dir() else os.link(src, tmp)
                os.replace(tmp, dst)
        return


def build_dataset(cfg: RunConfig, d: Path) -> str:
    samples = read_jsonl(d / "samples.jsonl")
    dataset = select(cfg, samples)
    stats = {"samples": len(samples), "correct": sum(r["correct"] for r in samples),
             "questions_solved": len({r["id"] for r in samples if r["correct"]}), "kept": len(dataset)}
    if not dataset:
        stats["warning"] = "no verified sample in this iteration; F_t is a copy of its init"
        print(f"warning: {d}: no verified sample; continuing with F_t = init", flush=True)
    atomic_write_json(d / "dataset_stats.json", stats)
    atomic_write_jsonl(d / "dataset.jsonl", dataset)
    return f"{stats['correct']}/{stats['samples']} verified, {stats['questions_solved']} questions solved, {len(dataset)} kept"


def run_arm(cfg: RunConfig, arm: str, base: Path) -> None:
    generator = base  # G
    for t in range(1, cfg.iterations + 1):
        d = iter_dir(cfg.run_dir, arm, t)
        seed = functools.partial(stage_seed, cfg.seed, t)
        step = functools.partial(stage, arm=arm, t=t, run_dir=cfg.run_dir)
        if t == 1:
            share_first_iteration(cfg, arm)
        step(d / "samples.jsonl", "sample", lambda: sample(cfg, generator, d / "samples.jsonl", seed("sample")))
        step(d / "dataset.jsonl", "verify", lambda: build_dataset(cfg, d))
        init = generator if cfg.finetune.init_from == "generator" else base
        step(d / "finetuned", "finetune",
             lambda: finetune(cfg, init, read_jsonl(d / "dataset.jsonl"), d / "finetuned", seed("finetune")))
        models = {"finetuned": d / "finetuned"}  # F_t
        if arm == "imm":
            step(d / "merged", "merge", lambda: merge_step(cfg, base, d / "finetuned", d / "merged", seed("merge")))
            models["merged"] = d / "merged"  # θ_t
        for name, path in models.items():
            out = d / "eval" / f"{name}.json"
            step(out, "evaluate", lambda: evaluate_model(cfg, path, out, seed("eval")))
        if cfg.analysis.enabled:
            step(d / "analysis", "analyse", lambda: analyse(cfg, arm, t, base))
        generator = models.get("merged", models["finetuned"])


def analyse(cfg: RunConfig, arm: str, t: int, base: Path) -> str:
    from imm.analysis import analyze_iteration

    a = cfg.analysis
    analyze_iteration(cfg.run_dir, arm, t, base=base, probe_task=a.probe_task, probe_size=a.probe_size,
                      importance=a.importance, max_new_tokens=cfg.eval.max_new_tokens, device=cfg.model.device)
    return "layers.csv, importance.csv, superficiality.json"


def check_run_dir(run_dir: Path, restart: bool) -> None:
    """A run writes only into a new folder or one that holds an imm run; --restart deletes only such a run."""
    if run_dir.is_symlink() and restart:
        raise UserError(f"{run_dir} is a symbolic link; --restart deletes only a run folder itself: remove the link yourself")
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run folder; choose another name=... or out_dir=...")
    if any(run_dir.iterdir()) and not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} exists and holds no imm run (no config.yaml); imm writes runs only into new "
                        f"folders: choose another name=... or out_dir=...")
    if restart and (foreign := foreign_entries(run_dir)):
        raise UserError(f"{run_dir} holds entries no run writes ({', '.join(foreign[:3])}); --restart deletes only "
                        f"a run folder: move them away first")


def prepare_run_dir(cfg: RunConfig, restart: bool) -> None:
    """Write the resolved config before any work; refuse to resume a folder made with another one."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    saved = cfg.run_dir / "config.yaml"
    check_run_dir(cfg.run_dir, restart)
    if restart and cfg.run_dir.exists():
        remove_written(cfg.run_dir, run_entries=RUN_ENTRIES)
    if saved.exists() and saved.read_text() != text:
        raise UserError(f"{cfg.run_dir} holds a run with another config; resume it with the same settings, "
                        f"pass --restart to start over, or choose another name=...")
    atomic_write_text(saved, text)
    for leftover in [p for p in cfg.run_dir.rglob(".*") if is_temporary(p)]:
        remove_written(leftover)  # from a killed run


def run_loop(cfg: RunConfig, restart: bool = False) -> Path:
    prepare_run_dir(cfg, restart)
    base = Path(resolve_model_path(cfg.model.base))
    started = time.perf_counter()
    out = cfg.run_dir / "iter_0" / "eval" / "generator.json"
    stage(out, "evaluate", lambda: evaluate_model(cfg, base, out, stage_seed(cfg.seed, 0, "eval")),
          arm="base", t=0, run_dir=cfg.run_dir)
    for arm in cfg.arms:
        run_arm(cfg, arm, base)
    rows = report.write_summary(cfg)
    print(report.format_table(rows, cfg))
    print(f"run folder: {cfg.run_dir}  ({time.perf_counter() - started:.0f}s)")
    return cfg.run_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="a shipped config (default, smoke) or a YAML path")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. sampling.k=8")
    parser.add_argument("--restart", action="store_true", help="delete the run folder (only an imm run) and start over")


def main(args: argparse.Namespace) -> int:
    import torch

    cfg = load_config(args.config, tuple(args.overrides))
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    run_loop(cfg, args.restart)
    return 0
