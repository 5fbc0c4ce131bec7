"""What a report computes from its runs: series over iterations, paired differences on the same
problems, forgetting per problem, and the superficiality figures with their permutation p-values.

Runs are seeds of one experiment. A figure's spread is its min–max over the runs. A difference's interval
counts both the training seed and the problems where there are several runs (the seed t-interval of
imm.report.stats), and the problems alone, conditional on the one trained model, where there is one run
(a paired bootstrap).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from statistics import mean
from typing import Sequence

from imm.arms import Source
from imm.layout import FINETUNED, GENERATOR, MERGED, TEACHER
from imm.analysis.importance import MEASURES
from imm.analysis.superficiality import spearman
from imm.report.runs import Run, theta_model
import numpy as np

from imm.report.stats import (Paired, SeedInterval, mcnemar_p, paired, paired_bootstrap, permutation_p,
                              pooled, problems_hold_zero, seed_interval, seeds_needed)

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

SEED_METHOD = ("t-interval over the seeds, df = seeds − 1, se² = var(per-seed difference)/seeds + the problems' "
               "share (a crossed seed × problem variance estimate, imm.report.stats): counts the training seed "
               "and the problems")
ONE_RUN_METHOD = ("bootstrap over the test problems of this one run (10,000 resamples): conditional on this one "
                  "trained model, it says nothing about training randomness")


@dataclass(frozen=True)
class Difference:
    """acc(B) − acc(A) on the same problems, per run (B, A: (arm, t); arm None is θ0)."""

    a: tuple[str | None, int]
    b: tuple[str, int]
    task: str
    strata: tuple[tuple[Paired, ...], ...]  # per run: one Paired per task (several for OOD_MEAN)
    by_problem: tuple[tuple[int, ...], ...]  # per run: b − a per problem, the problems common to every run

    @property
    def per_run(self) -> list[float]:
        return [pooled(s).difference for s in self.strata]

    @property
    def total(self) -> Paired:
        return pooled([p for s in self.strata for p in s])

    @property
    def estimate(self) -> float:
        """The mean of the per-run differences (one run: its difference)."""
        return self.seeds.mean if self.seeds else self.total.difference

    @functools.cached_property
    def seeds(self) -> SeedInterval | None:
        """The seed t-interval, where there are two runs or more on common problems."""
        if len(self.by_problem) < 2 or not self.by_problem[0]:
            return None
        return seed_interval(np.array(self.by_problem, dtype=float))  # (S, P)

    @property
    def method(self) -> str:
        return SEED_METHOD if self.seeds else ONE_RUN_METHOD

    @functools.cached_property
    def interval(self) -> tuple[float, float]:
        if s := self.seeds:
            return s.low, s.high
        return paired_bootstrap([p for s in self.strata for p in s])

    @property
    def claims(self) -> bool:
        """The rule: a direction is claimed only where the interval excludes zero."""
        lo, hi = self.interval
        return lo > 0 or hi < 0

    @property
    def p(self) -> float:
        """The seed t-test's p with several runs; McNemar's exact p with one."""
        return self.seeds.p if self.seeds else mcnemar_p(self.total.gained, self.total.lost)

    @property
    def run_p(self) -> list[float]:
        """McNemar's exact p of each run on its own."""
        return [mcnemar_p(pooled(s).gained, pooled(s).lost) for s in self.strata]

    @property
    def seeds_for_a_claim(self) -> int | None:
        """Where no direction is claimed: the seeds a claim would need at the observed spread (one run: with no
        spread between seeds, the fewest that could claim at all); None where none up to 100 would."""
        return seeds_needed(self.estimate, self.seeds.seed_variance if self.seeds else 0.0, self._problems_share)

    @property
    def problems_hold_zero(self) -> bool:
        """Whether the test problems' share alone keeps zero inside the interval, so that no number of seeds
        could make a claim (only more test problems could)."""
        return problems_hold_zero(self.estimate, self._problems_share)

    @property
    def _problems_share(self) -> float:
        """The problems' share of se²: the crossed estimate with several runs; var(c_i)/P with one (no seed
        spread known)."""
        if self.seeds:
            return self.seeds.problem_variance
        values = np.array(self.by_problem[0], dtype=float)  # (P,)
        return float(values.var(ddof=1)) / len(values) if len(values) > 1 else 0.0

    @property
    def agreeing(self) -> int:
        """Runs whose difference has the estimate's sign."""
        sign = (self.estimate > 0) - (self.estimate < 0)
        return sum(1 for d in self.per_run if (d > 0) - (d < 0) == sign)


def correct(run: Run, arm: str | None, t: int, task: str) -> dict[str, bool]:
    rows = run.greedy(arm or run.arms[0], t, task)
    return {pid: bool(row["correct"]) for pid, row in rows.items()}


def difference(runs: list[Run], a: tuple[str | None, int], b: tuple[str, int], tasks: list[str],
               label: str) -> Difference | None:
    strata, per_problem = [], []
    for run in runs:
        parts, values = [], {}
        for task in tasks:
            left, right = correct(run, a[0], a[1], task), correct(run, b[0], b[1], task)
            ids = [pid for pid in left if pid in right]
            if ids:
                parts.append(paired([left[i] for i in ids], [right[i] for i in ids]))
                values |= {(task, i): int(right[i]) - int(left[i]) for i in ids}
        if parts:
            strata.append(tuple(parts))
            per_problem.append(values)
    if not strata:
        return None
    common = [k for k in per_problem[0] if all(k in v for v in per_problem[1:])]
    return Difference(a, b, label, tuple(strata), tuple(tuple(v[k] for k in common) for v in per_problem))


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
    """(who, stage) -> seconds per run, summed over iterations (who: one of the run's arms, as the report
    reads it, or 'reference')."""
    found: dict[tuple[str, str], list[float]] = {}
    for i, run in enumerate(runs):
        for row in run.timings:
            if row["arm"] != "reference" and row["arm"] not in run.cfg.arms:
                continue
            key = (row["arm"], row["stage"])
            found.setdefault(key, [0.0] * len(runs))[i] += row["seconds"]
    return {k: Spread(tuple(v)) for k, v in found.items()}
