"""The report's statistics: paired intervals over the same problems, permutation p-values, EAD.

    paired difference   two models answer the same n problems; `gained` = problems only B solves,
                        `lost` = problems only A solves; acc(B) − acc(A) = (gained − lost) / n
    McNemar exact p     two-sided binomial test of gained vs lost among the discordant pairs
                        (McNemar 1947; exact form: Fay 2010): p = min(1, 2·P[Bin(m, ½) ≤ min(g, l)])
    paired bootstrap    percentile interval of the difference, resampling problems with replacement
                        (within each seed when several runs are pooled: a stratified bootstrap)
    permutation p       two-sided p of Spearman's ρ: the share of pairings of the same values whose
                        |ρ| is at least the observed |ρ| (exact up to 8 points, sampled above)
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
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
