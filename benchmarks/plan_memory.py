"""`imm plan`'s memory per stage against the peaks a run measured (timings.jsonl), and updates its own section of
docs/benchmarks.md ("imm plan memory against measured peaks").

    python benchmarks/plan_memory.py RUN_DIR [RUN_DIR ...] [--gold-finetune N]

Each RUN_DIR is a finished `imm run` folder, run on a CPU with model.workers=1 (forked workers' resident memory
counts the pages they share with the parent once per worker, so their sum is not what the machine holds). Its
config.yaml is planned as `imm plan` plans it (the model its `resolved:` folder) and each stage's largest
`peak_rss_mib` at its first run is set against the plan's figure. A stage of the run that trained on an empty D_t measured a copy,
not a fine-tune: where every D_t was empty, `--gold-finetune N` fine-tunes the run's θ0 on N gold solutions of its training task with
the run's finetune settings, in this process, under the loop's own stage meter (imm.stage_memory), and the plan's
fine-tune figure is for responses as long as the longest of those gold solutions.

Measured on the built-in default (scaled down: 1 iteration, 300 questions, 100 test questions per task; the
batches, and so the peaks, are the default's) and on SmolLM2-135M-Instruct (the smollm2 config scaled down as
tests/test_smollm2.py runs it; stopped after its merge, the stages compared here):

    .venv/bin/imm run name=default-planmem out_dir=OUT model.threads=1 model.workers=1 iterations=1 \
        data.train_questions=300 eval.limit=100
    .venv/bin/imm run --config smollm2 name=smollm2-planmem out_dir=OUT model.base=SMOLLM2 model.threads=1 \
        model.workers=1 iterations=1 data.train_questions=12 sampling.k=2 sampling.max_new_tokens=64 eval.limit=4 \
        eval.max_new_tokens=64 eval.diversity_k=0   (with the data overrides of README "SmolLM2 offline")
    python benchmarks/plan_memory.py OUT/default-planmem OUT/smollm2-planmem --gold-finetune 8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _log import machine, write_section  # noqa: E402

from imm.config import RunConfig, from_dict  # noqa: E402
from imm.plan import Plan, make_plan, stage_memory  # noqa: E402
from imm.plan_memory import MIB, runtime_bytes  # noqa: E402

TITLE = "imm plan memory against measured peaks"
NOTE = ("Target: within ±30% of the measured peak. A CPU process rarely hands freed memory back to the system, so "
        "a stage's measured peak also holds what earlier stages left behind: the merge ran after the fine-tune "
        "(built-in) and after the gradient-importance analysis (SmolLM2), so its measured peak is their residue, "
        "not its own need, and its row reads low. The whole run's row is the figure to size a machine by. The "
        "built-in fine-tune is planned at the longest sequence the settings allow (prompt + max_new_tokens); "
        "its samples were shorter. SmolLM2 verified no sample, so its fine-tune row is the loop's fine-tune "
        "on 8 gold solutions (LoRA rank 8, batch 8, 2 epochs), planned for responses of their length.")


def run_config(run_dir: Path) -> RunConfig:
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    resolved = raw.pop("resolved", {})
    raw["model"]["base"] = resolved.get("base", {}).get("folder", raw["model"]["base"])
    return from_dict(RunConfig, raw)


def measured_peaks(run_dir: Path) -> dict[str, int]:
    """Each stage's peak resident memory in MiB at its first run (the least residue of earlier stages)."""
    peaks: dict[str, int] = {}
    for line in (run_dir / "timings.jsonl").read_text().splitlines():
        record = json.loads(line)
        peaks.setdefault(record["stage"], record["peak_rss_mib"] + record["children_peak_rss_mib"])
    return peaks


def run_peak(run_dir: Path) -> int:
    records = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    return max(r["peak_rss_mib"] + r["children_peak_rss_mib"] for r in records)


def trained_nothing(run_dir: Path) -> bool:
    """Whether every D_t of the run was empty (its fine-tune stages copied their init)."""
    stats = list(run_dir.glob("arms/*/iter_*/dataset_stats.json"))
    return bool(stats) and all(json.loads(p.read_text())["kept"] == 0 for p in stats)


def gold_finetune_peak(cfg: RunConfig, count: int, out: Path) -> int:
    """Peak MiB of the loop's fine-tune of θ0 on `count` gold solutions, under the loop's stage meter (measured
    once per run folder: kept in gold-finetune/peak-N.json beside its F)."""
    kept = out / f"peak-{count}.json"
    if kept.exists():
        return json.loads(kept.read_text())["peak_mib"]
    from transformers import AutoTokenizer

    from imm.finetune_launch import finetune_checkpoint
    from imm.prompts import prompter
    from imm.stage_memory import StageMemory
    from imm.tasks.registry import get_task
    from imm.verify.training_set import Example

    out.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.data.train_task)
    problems = task.problems("train")[:count]
    build = prompter(task, cfg.prompt, AutoTokenizer.from_pretrained(cfg.model.base), problems)
    gold = [Example(id=p.id, prompt=build(p), response=build.response(p.solution)) for p in problems]
    with StageMemory() as memory:
        finetune_checkpoint(cfg.model.base, gold, cfg.finetune, out / "F", out / "stats.json", seed=0, device="cpu")
    record = memory.record()
    peak = record["peak_rss_mib"] + record["children_peak_rss_mib"]
    kept.write_text(json.dumps({"peak_mib": peak, "examples": count}))
    return peak


def longest_gold_response(cfg: RunConfig, count: int) -> int:
    """Tokens of the longest of the first `count` gold solutions, as a training response."""
    from transformers import AutoTokenizer

    from imm.prompts import prompter
    from imm.tasks.registry import get_task

    task = get_task(cfg.data.train_task)
    problems = task.problems("train")[:count]
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.base)
    build = prompter(task, cfg.prompt, tokenizer, problems)
    return max(len(tokenizer(build.response(p.solution), add_special_tokens=False)["input_ids"]) for p in problems)


def rows_for(run_dir: Path, gold: int) -> list[str]:
    cfg = run_config(run_dir)
    plan = make_plan(cfg)
    planned = stage_memory(plan, "cpu", runtime_bytes())
    peaks = measured_peaks(run_dir)
    if gold:
        peaks["finetune"] = gold_finetune_peak(cfg, gold, run_dir / "gold-finetune")
        longest = longest_gold_response(cfg, gold)  # what the plan is told the responses are: the gold ones' length
        as_gold = dataclasses.replace(cfg, sampling=dataclasses.replace(cfg.sampling, max_new_tokens=longest))
        planned["finetune"] = stage_memory(Plan(as_gold, plan.shape, plan.lengths), "cpu", runtime_bytes())["finetune"]
    label = f"{cfg.name} ({plan.shape.parameters / 1e6:.1f}M, {cfg.finetune.method})"
    rows = []
    for stage, memory in planned.items():
        if stage not in peaks:
            continue
        note = f" ({gold} gold solutions of up to {longest} tokens)" if stage == "finetune" and gold else ""
        rows.append(f"| {label} | {stage}{note} | {memory.total / MIB:,.0f} | {peaks[stage]:,} | "
                    f"{memory.total / MIB / peaks[stage]:.2f} | {memory.describe()} |")
    whole, measured = max(m.total for m in planned.values()) / MIB, max(run_peak(run_dir), *peaks.values())
    rows.append(f"| {label} | **whole run** (largest stage) | {whole:,.0f} | {measured:,} | {whole / measured:.2f} | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--gold-finetune", type=int, default=0, metavar="N")
    args = parser.parse_args()
    table = ["| run | stage | plan MiB | measured peak MiB | plan / measured | plan by part (MiB) |",
             "|---|---|---|---|---|---|"]
    for run_dir in args.runs:
        table += rows_for(run_dir, args.gold_finetune if trained_nothing(run_dir) else 0)
    write_section(TITLE, table, NOTE, setting=f"{machine()}; the runs with model.threads=1 model.workers=1")


if __name__ == "__main__":
    main()
