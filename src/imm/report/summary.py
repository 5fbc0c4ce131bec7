"""The run's summary: `summary.csv` (arm,iteration,model,task,domain,metric,value,n) and the table
printed at the end of `imm run`, in-domain and out-of-domain side by side per arm and iteration."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from imm.arms import Source
from imm.config import RunConfig
from imm.layout import GENERATOR, MODELS, TEACHER, RunLayout
from imm.outputs import atomic_write_text

HEADER = ("arm", "iteration", "model", "task", "domain", "metric", "value", "n")


@dataclass(frozen=True)
class SummaryRow:
    arm: str
    iteration: int
    model: str  # generator (θ0) or teacher at iteration 0 | finetuned (F_t) | merged (θ_t)
    task: str
    domain: str  # id | ood
    metric: str
    value: float
    n: int


def _rows_of(path: Path, arm: str, t: int, model: str) -> list[SummaryRow]:
    results = json.loads(path.read_text())
    return [SummaryRow(arm, t, model, task, r["domain"], metric, value, r["n"])
            for task, r in results.items() for metric, value in r["metrics"].items()]


def collect(cfg: RunConfig) -> list[SummaryRow]:
    layout, rows = RunLayout(cfg.run_dir), []
    for arm in cfg.arms:
        references = (GENERATOR, TEACHER) if cfg.arm(arm).samples_from is Source.TEACHER else (GENERATOR,)
        for model in references:
            path = layout.reference_evaluation(model)
            rows += _rows_of(path, arm, 0, model) if path.exists() else []
        for t in range(1, cfg.iterations + 1):
            for model in MODELS:
                path = layout.evaluation(arm, t, model)
                rows += _rows_of(path, arm, t, model) if path.exists() else []
    return rows


def write_summary(cfg: RunConfig) -> list[SummaryRow]:
    rows = collect(cfg)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((r.arm, r.iteration, r.model, r.task, r.domain, r.metric, f"{r.value:.6g}", r.n) for r in rows)
    atomic_write_text(RunLayout(cfg.run_dir).summary, buf.getvalue())
    return rows


def format_table(rows: list[SummaryRow], cfg: RunConfig, metric: str = "strict-match") -> str:
    """One line per arm, iteration and model: ID accuracy, mean OOD accuracy, then each task."""
    tasks = [spec.partition("=")[0] for spec in (*cfg.data.id_tasks, *cfg.data.ood_tasks)]  # NAME=PATH -> NAME
    acc = {(r.arm, r.iteration, r.model, r.task): r.value for r in rows if r.metric == metric}
    keys = sorted({k[:3] for k in acc}, key=lambda k: (cfg.arms.index(k[0]), k[1], k[2] != GENERATOR, k[2]))
    head = f"{'arm':<13}{'t':>2} {'model':<10}{'ID':>7}{'OOD':>7} | " + " ".join(f"{t[:12]:>12}" for t in tasks)
    lines = [f"{metric} accuracy (%)", head, "-" * len(head)]
    for arm, t, model in keys:
        vals = [acc.get((arm, t, model, task)) for task in tasks]
        ident = _mean(vals[:len(cfg.data.id_tasks)])
        ood = _mean(vals[len(cfg.data.id_tasks):])
        cells = " ".join(f"{'-' if v is None else f'{100 * v:.1f}':>12}" for v in vals)
        lines.append(f"{arm:<13}{t:>2} {model:<10}{_pct(ident):>7}{_pct(ood):>7} | {cells}")
    return "\n".join(lines)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def read_summary(path: Path) -> list[SummaryRow]:
    with open(path) as f:
        return [SummaryRow(r["arm"], int(r["iteration"]), r["model"], r["task"], r["domain"], r["metric"],
                           float(r["value"]), int(r["n"])) for r in csv.DictReader(f)]
