"""What a report computes from its runs: series over iterations, paired differences on the same
problems, forgetting per problem, and the superficiality figures with their permutation p-values.

Runs are seeds of one experiment. A figure's spread is its min–max over the runs; a difference's
interval is a stratified paired bootstrap over the problems of every run (imm.report.stats).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import Sequence

from imm.arms import Source
from imm.layout import FINETUNED, GENERATOR, MERGED, TEACHER
from imm.analysis.importance import MEASURES
from imm.analysis.superficiality import spearman
from imm.report.runs import Run, theta_model
from imm.report.stats import Paired, mcnemar_p, paired, paired_bootstrap, permutation_p, pooled

STRICT = "strict-match"
OOD_MEAN = "OOD mean"  # the out-of-domain tasks together (equal test sizes: their mean accuracy)
IMPORTANCE_COLUMNS = {kind: m.column for kind, m in MEASURES.items()}


@dataclass(frozen=True)
class Spread:
    values: tuple[float, ...]  # one per run

    @property
    def mean(self) -> float:
        return mean(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def spread(values: Sequence[float | None]) -> Spread | None:
    present = tuple(v for v in values if v is not None)
    return Spread(present) if present else None


# --- what is in the runs -------------------------------------------------------------------------

def arms(runs: list[Run]) -> list[str]:
    return [a for a in runs[0].arms if any(run.iterations(a) for run in runs)]


def iterations(runs: list[Run], arm: str) -> list[int]:
    """Iterations every run has evaluated (a run in progress shortens the series)."""
    common = set(runs[0].iterations(arm))
    for run in runs[1:]:
        common &= set(run.iterations(arm))
    return sorted(common)


def last(runs: list[Run], arm: str) -> int | None:
    found = iterations(runs, arm)
    return found[-1] if found else None


def has_teacher(runs: list[Run]) -> bool:
    return any(runs[0].cfg.arm(a).samples_from is Source.TEACHER for a in runs[0].arms)


def value(runs: list[Run], arm: str, t: int, task: str, metric: str, model: str | None = None) -> Spread | None:
    """θ_t's figure (θ0 at t = 0; `model` picks F_t, θ_t or the teacher explicitly) across the runs."""
    model = model or theta_model(runs[0].cfg.arm(arm), t)
    return spread([run.value(_owner(run, arm, model), t, model, task, metric) for run in runs])


def _owner(run: Run, arm: str, model: str) -> str:
    """Whose rows hold a model: θ0's and the teacher's are repeated under every arm at iteration 0."""
    if model == GENERATOR:
        return run.arms[0]
    if model == TEACHER:
        return next(a for a in run.arms if run.cfg.arm(a).samples_from is Source.TEACHER)
    return arm


# --- paired differences --------------------------------------------------------------------------

@dataclass(frozen=True)
class Difference:
    """acc(B) − acc(A) on the same problems, per run and pooled (B, A: (arm, t); arm None is θ0)."""

    a: tuple[str | None, int]
    b: tuple[str, int]
    task: str
    strata: tuple[tuple[Paired, ...], ...]  # per run: one Paired per task (several for OOD_MEAN)

    @property
    def per_run(self) -> list[float]:
        return [pooled(s).difference for s in self.strata]

    @property
    def total(self) -> Paired:
        return pooled([p for s in self.strata for p in s])

    @property
    def interval(self) -> tuple[float, float]:
        return paired_bootstrap([p for s in self.strata for p in s])

    @property
    def p(self) -> float:
        return mcnemar_p(self.total.gained, self.total.lost)

    @property
    def agreeing(self) -> int:
        """Runs whose difference has the pooled difference's sign."""
        sign = (self.total.difference > 0) - (self.total.difference < 0)
        return sum(1 for d in self.per_run if (d > 0) - (d < 0) == sign)


def correct(run: Run, arm: str | None, t: int, task: str) -> dict[str, bool]:
    rows = run.greedy(arm or run.arms[0], t, task)
    return {pid: bool(row["correct"]) for pid, row in rows.items()}


def difference(runs: list[Run], a: tuple[str | None, int], b: tuple[str, int], tasks: list[str],
               label: str) -> Difference | None:
    strata = []
    for run in runs:
        parts = []
        for task in tasks:
            left, right = correct(run, a[0], a[1], task), correct(run, b[0], b[1], task)
            ids = [pid for pid in left if pid in right]
            if ids:
                parts.append(paired([left[i] for i in ids], [right[i] for i in ids]))
        if parts:
            strata.append(tuple(parts))
    return Difference(a, b, label, tuple(strata)) if strata else None


def task_groups(runs: list[Run]) -> list[tuple[str, list[str]]]:
    """(label, tasks): each task, then the out-of-domain tasks together."""
    tasks = runs[0].tasks
    ood = [t for t, d in tasks if d == "ood"]
    return [(t, [t]) for t, _ in tasks] + ([(OOD_MEAN, ood)] if len(ood) > 1 else [])


def merge_pairs(runs: list[Run]) -> list[tuple[str, str]]:
    """(arm without merge, the same arm with IMM): imm vs self_improve, distill_imm vs distill."""
    names = arms(runs)
    arm = runs[0].cfg.arm
    return [(plain, merged) for merged in names if arm(merged).merges
            for plain in names if not arm(plain).merges and arm(plain).samples_from is arm(merged).samples_from]


def arm_differences(runs: list[Run]) -> list[Difference]:
    """Every merge-vs-plain difference at every common iteration, on each task and the OOD mean."""
    found = []
    for plain, merged in merge_pairs(runs):
        for t in sorted(set(iterations(runs, plain)) & set(iterations(runs, merged))):
            for label, tasks in task_groups(runs):
                if d := difference(runs, (plain, t), (merged, t), tasks, label):
                    found.append(d)
    return found


def changes_from_theta0(runs: list[Run], arm: str, t: int) -> list[Difference]:
    """θ_t − θ0 of one arm on each task and the OOD mean."""
    return [d for label, tasks in task_groups(runs) if (d := difference(runs, (None, 0), (arm, t), tasks, label))]


# --- forgetting per problem ----------------------------------------------------------------------

def forgetting(runs: list[Run], arm: str, t: int, task: str) -> list[Paired]:
    """Per run: gained = learned (θ0 wrong, θ_t right), lost = forgotten (θ0 right, θ_t wrong)."""
    d = difference(runs, (None, 0), (arm, t), [task], task)
    return [s[0] for s in d.strata] if d else []


def examples(run: Run, task: str, names: list[str], limit: int = 2) -> list[dict]:
    """Problems θ0 solved that the first arm's last θ_t fails, with every arm's last answer beside θ0's."""
    finals = {a: max(run.iterations(a)) for a in names if run.iterations(a)}
    if not finals:
        return []
    first = next(iter(finals))
    before, after = run.greedy(first, 0, task), run.greedy(first, finals[first], task)
    lost = [pid for pid, row in before.items() if row["correct"] and pid in after and not after[pid]["correct"]]
    found = []
    for pid in lost[:limit]:
        answers = {"θ0": before[pid]}
        answers |= {f"{a} t={t}": run.greedy(a, t, task).get(pid) for a, t in finals.items()}
        found.append({"id": pid, "prompt": before[pid]["prompt"], "gold": before[pid]["gold"], "answers": answers})
    return found


# --- layers --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerFigure:
    arm: str
    t: int
    model: str  # finetuned (F_t) | merged (θ_t)
    kind: str  # ablation | gradient
    rho: Spread
    p: tuple[float | None, ...]  # permutation p per run
    share: Spread | None  # Σ U² in the critical quarter / Σ U²
    uniform: float | None


def block_updates(run: Run, arm: str, t: int, model: str, column: str = "relative") -> dict[int, float]:
    return {int(r["layer"]): float(r[column]) for r in run.table(arm, t, "layers.csv")
            if r["model"] == model and r["module"] == "all" and r["layer"].isdigit()}


def importance(run: Run, arm: str, t: int, kind: str) -> dict[int, float]:
    column = IMPORTANCE_COLUMNS[kind]
    return {int(r["layer"]): float(r[column]) for r in run.table(arm, t, "importance.csv") if r.get(column)}


def layer_figure(runs: list[Run], arm: str, t: int, model: str, kind: str) -> LayerFigure | None:
    rhos, ps, shares, uniform = [], [], [], None
    for run in runs:
        updates, imp = block_updates(run, arm, t, model, "delta_l2"), importance(run, arm, t, kind)
        layers = sorted(set(updates) & set(imp))
        if len(layers) < 3:
            continue
        x, y = [imp[i] for i in layers], [updates[i] for i in layers]
        rhos.append(spearman(x, y))
        ps.append(permutation_p(x, y))
        for f in run.superficiality(arm, t).get("figures", []):
            if f["model"] == model and f["importance"] == kind:
                shares.append(f["critical_share"])
                uniform = f["uniform_share"]
    rho = spread(rhos)
    return LayerFigure(arm, t, model, kind, rho, tuple(ps), spread(shares), uniform) if rho else None


def layer_figures(runs: list[Run]) -> list[LayerFigure]:
    kinds = list(runs[0].cfg.analysis.importance)
    found = []
    for arm in arms(runs):
        models = [FINETUNED, MERGED] if runs[0].cfg.arm(arm).merges else [FINETUNED]
        for t in iterations(runs, arm):
            found += [f for m in models for k in kinds if (f := layer_figure(runs, arm, t, m, k))]
    return found


# --- time ----------------------------------------------------------------------------------------

def stage_seconds(runs: list[Run]) -> dict[tuple[str, str], Spread]:
    """(who, stage) -> seconds per run, summed over iterations (who: an arm or 'reference')."""
    found: dict[tuple[str, str], list[float]] = {}
    for i, run in enumerate(runs):
        for row in run.timings:
            key = (row["arm"], row["stage"])
            found.setdefault(key, [0.0] * len(runs))[i] += row["seconds"]
    return {k: Spread(tuple(v)) for k, v in found.items()}
