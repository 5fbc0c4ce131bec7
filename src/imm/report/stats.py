"""The report's statistics: paired intervals over the same problems, permutation p-values, EAD.

    paired difference   two models answer the same n problems; `gained` = problems only B solves,
                        `lost` = problems only A solves; acc(B) − acc(A) = (gained − lost) / n
    McNemar exact p     two-sided binomial test of gained vs lost among the discordant pairs
                        (McNemar 1947; exact form: Fay 2010): p = min(1, 2·P[Bin(m, ½) ≤ min(g, l)])
    paired bootstrap    percentile interval of the difference, resampling problems with replacement: the
                        interval of ONE run, conditional on its trained models (it knows nothing of training
                        randomness)
    seed t-interval     several runs (training seeds) on the same P problems, x_si = b − a of seed s on
                        problem i, d_s = seed s's mean, c_i = problem i's mean over the S seeds: a crossed
                        seed × problem design, Var(mean) = σ²_seed/S + σ²_problem/P + σ²_rest/(SP). Then
                        E[var(d_s)] = σ²_seed + σ²_rest/P, E[var(c_i)] = σ²_problem + σ²_rest/S and the
                        two-way residual mean square estimates σ²_rest, so
                            se² = var(d_s)/S + max(0, var(c_i)/P − MS_rest/(SP))
                        (the first term alone where the problems add nothing), and the interval is
                        mean(d_s) ± t(0.975, S − 1)·se: df = S − 1, the smallest Welch–Satterthwaite value,
                        errs wide. With S ≤ 4 it holds every d_s (max |d_s − mean| ≤ s·(S−1)/√S and
                        t(0.975, S−1) ≥ S − 1 for S ≤ 4). benchmarks/coverage.py measures its coverage.
    permutation p       two-sided p of Spearman's ρ: the share of pairings of the same values whose
                        |ρ| is at least the observed |ρ| (exact up to 8 points, sampled above)
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from imm.analysis.superficiality import ranks, spearman

RESAMPLES = 10_000
LEVEL = 0.95
EXACT_PERMUTATIONS_UP_TO = 8  # 8! = 40,320 pairings: exact; more points are sampled


@dataclass(frozen=True)
class Paired:
    """Counts of one paired comparison of B against A on the same problems."""

    gained: int  # B right, A wrong
    lost: int  # A right, B wrong
    n: int

    @property
    def difference(self) -> float:
        return (self.gained - self.lost) / self.n if self.n else 0.0


def paired(a: Sequence[bool], b: Sequence[bool]) -> Paired:
    if len(a) != len(b):
        raise ValueError(f"paired needs the same problems, got {len(a)} and {len(b)} answers")
    return Paired(sum(1 for x, y in zip(a, b) if y and not x), sum(1 for x, y in zip(a, b) if x and not y), len(a))


def pooled(parts: Sequence[Paired]) -> Paired:
    return Paired(sum(p.gained for p in parts), sum(p.lost for p in parts), sum(p.n for p in parts))


def mcnemar_p(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value; 1.0 when there is no discordant pair."""
    m = gained + lost
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(gained, lost) + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def paired_bootstrap(strata: Sequence[Paired], *, resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the pooled difference, resampling each stratum's problems (a seed's run).

    A paired problem contributes +1, −1 or 0 to the difference, so a resample of a stratum is one
    multinomial draw of (gained, lost, same) counts: the same law as resampling the pairs themselves."""
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for s in strata:
        if s.n == 0:
            continue
        p = np.array([s.gained, s.lost, s.n - s.gained - s.lost]) / s.n
        draws = rng.multinomial(s.n, p, size=resamples)  # (resamples, 3)
        total += draws[:, 0] - draws[:, 1]
    diffs = total / max(1, sum(s.n for s in strata))
    tail = (1 - level) / 2
    return float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))


@dataclass(frozen=True)
class SeedInterval:
    """The seed t-interval of a mean paired difference over S seeds and P problems (module docstring)."""

    mean: float
    low: float
    high: float
    seeds: int
    seed_variance: float  # var(d_s), ddof 1
    problem_variance: float  # max(0, var(c_i)/P − MS_rest/(SP)): the problems' share of se²
    p: float  # two-sided t-test of mean 0, df = S − 1

    @property
    def claims(self) -> bool:
        """The rule: a direction is claimed only where the interval excludes zero."""
        return self.low > 0 or self.high < 0


def seed_interval(by_problem: np.ndarray, level: float = LEVEL) -> SeedInterval:
    """by_problem: (S, P) of b − a per seed and problem (+1, 0, −1), S ≥ 2, the same P problems in every row."""
    seeds, problems = by_problem.shape
    if seeds < 2:
        raise ValueError(f"a seed interval needs two seeds or more, got {seeds}")
    per_seed, per_problem = by_problem.mean(axis=1), by_problem.mean(axis=0)  # (S,), (P,)
    seed_var = float(per_seed.var(ddof=1))
    problem_var = problems_share(by_problem) if problems > 1 else 0.0
    se = math.sqrt(seed_var / seeds + problem_var)
    mean, t = float(per_seed.mean()), t_quantile((1 + level) / 2, seeds - 1)
    p = 2 * (1 - t_cdf(abs(mean) / se, seeds - 1)) if se > 0 else float(mean == 0)
    low, high = max(-1.0, mean - t * se), min(1.0, mean + t * se)  # a difference of accuracies lies in [−1, 1]
    return SeedInterval(mean, low, high, seeds, seed_var, problem_var, min(1.0, p))


def problems_share(by_problem: np.ndarray) -> float:
    """σ²_problem/P estimated as var(c_i)/P − MS_rest/(SP), at least 0 (see the module docstring)."""
    seeds, problems = by_problem.shape
    per_seed, per_problem = by_problem.mean(axis=1), by_problem.mean(axis=0)  # (S,), (P,)
    rest = by_problem - per_seed[:, None] - per_problem[None, :] + by_problem.mean()  # (S, P)
    ms_rest = float((rest ** 2).sum()) / ((seeds - 1) * (problems - 1)) if seeds > 1 else 0.0
    return max(0.0, float(per_problem.var(ddof=1)) / problems - ms_rest / (seeds * problems))


def seeds_needed(mean: float, seed_variance: float, problem_variance: float, level: float = LEVEL,
                 most: int = 100) -> int | None:
    """The smallest number of seeds n whose interval would exclude zero if the mean, the per-seed variance and
    the problems' share stayed as observed: t(level, n − 1)·√(var(d_s)/n + var(c_i)/P) < |mean|. With one seed
    var(d_s) is unknown; 0 gives the fewest seeds that could make a claim at all. None if no n up to `most`
    does (the problems' variance, or the spread, keeps zero inside)."""
    for n in range(2, most + 1):
        if t_quantile((1 + level) / 2, n - 1) * math.sqrt(seed_variance / n + problem_variance) < abs(mean):
            return n
    return None


def problems_hold_zero(mean: float, problem_variance: float, level: float = LEVEL) -> bool:
    """Whether the problems' share alone keeps zero inside the interval with any number of seeds: the limit of
    t(level, n − 1)·√(var(d_s)/n + var(c_i)/P) as n grows is z(level)·√(var(c_i)/P). Then more seeds cannot make
    a claim, and only more test problems can narrow the interval."""
    return NormalDist().inv_cdf((1 + level) / 2) * math.sqrt(problem_variance) >= abs(mean)


def t_cdf(x: float, df: int) -> float:
    """Student's t distribution function for an integer df ≥ 1 (Abramowitz & Stegun 26.7.3–26.7.4, exact)."""
    theta = math.atan2(x, math.sqrt(df))
    c2, term, total = math.cos(theta) ** 2, 1.0, 0.0
    if df % 2:  # A = (2/π)(θ + sin θ cos θ (1 + (2/3)cos²θ + ... ))
        if df > 1:
            total = term
            for k in range(3, df - 1, 2):
                term *= c2 * (k - 1) / k
                total += term
            total *= math.sin(theta) * math.cos(theta)
        two_sided = 2 / math.pi * (theta + total)
    else:  # A = sin θ (1 + (1/2)cos²θ + (1·3)/(2·4)cos⁴θ + ...)
        total = term
        for k in range(2, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        two_sided = math.sin(theta) * total
    return 0.5 + two_sided / 2  # two_sided = P(|T| ≤ |x|) carries x's sign through θ


@functools.lru_cache(maxsize=None)
def t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with integer df, by bisection on `t_cdf` (to 1e-10)."""
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return (lo + hi) / 2


def permutation_p(x: Sequence[float], y: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0) -> float | None:
    """Two-sided permutation p-value of Spearman's ρ(x, y); None where ρ is undefined."""
    observed = spearman(x, y)
    if observed is None:
        return None
    rx, ry = np.array(ranks(x)), np.array(ranks(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    n = len(rx)
    if n <= EXACT_PERMUTATIONS_UP_TO:
        orders = _all_orders(n)  # (n!, n)
    else:
        rng = np.random.default_rng(seed)
        orders = np.argsort(rng.random((resamples, n)), axis=1)
    rho = ry[orders] @ rx / math.sqrt(float(rx @ rx) * float(ry @ ry))  # (permutations,)
    return float(np.mean(np.abs(rho) >= abs(observed) - 1e-12))


@functools.lru_cache(maxsize=None)
def _all_orders(n: int) -> np.ndarray:
    """Every permutation of range(n), made once per n (a report tests dozens of ρ over the same layers)."""
    orders = np.array(list(itertools.permutations(range(n))))
    orders.flags.writeable = False
    return orders


def describe_interval(lo: float, hi: float, scale: float = 100.0) -> str:
    return f"{scale * lo:+.1f} to {scale * hi:+.1f}"
