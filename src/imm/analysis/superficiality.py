"""Superficiality figures (docs/method.md §3): do updates avoid the reasoning-critical layers?

Across decoder blocks l, with importance I_l (of θ0) and update U_l = ‖X_l − θ0_l‖₂:
    spearman        rank correlation of I and U (negative: updates avoid the critical layers)
    critical        the top quarter of blocks by importance, ceil(L/4) of them (ties: lower index first)
    critical_share  Σ_{l∈critical} U_l² / Σ_l U_l²: the part of ‖X − θ0‖² that lands in them
                    (squared norms add over disjoint parameters, so the shares of all blocks sum to 1)
    uniform_share   the same share if every parameter moved alike: critical parameters / all block parameters
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank (as Spearman's rho requires)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            result[i] = (start + end) / 2 + 1
        start = end + 1
    return result


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None when undefined (fewer than 2 points or a constant input)."""
    if len(x) != len(y):
        raise ValueError(f"pearson needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    vx, vy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else None


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation with average ranks for ties; None when undefined."""
    return pearson(ranks(x), ranks(y))


def critical_layers(importance: dict[int, float]) -> list[int]:
    """The top quarter of blocks by importance, ceil(L/4) of them; ties broken toward the lower index."""
    count = max(1, math.ceil(len(importance) / 4))
    by_importance = sorted(importance, key=lambda layer: (-importance[layer], layer))
    return sorted(by_importance[:count])


def critical_share(updates: dict[int, float], critical: Sequence[int]) -> float | None:
    """Share of Σ U_l² in the critical blocks; None when nothing moved."""
    total = sum(u * u for u in updates.values())
    return sum(updates[layer] ** 2 for layer in critical) / total if total > 0 else None


@dataclass(frozen=True)
class Superficiality:
    model: str  # finetuned | merged | model
    importance: str  # ablation | gradient
    n_layers: int
    spearman: float | None  # importance vs delta_l2
    spearman_relative: float | None  # importance vs relative update
    critical: tuple[int, ...]
    critical_share: float | None
    uniform_share: float


def superficiality(
    model: str,
    kind: str,
    importance: dict[int, float],
    updates: dict[int, float],
    relative: dict[int, float],
    n_params: dict[int, int],
) -> Superficiality:
    """The figures for one checkpoint and one importance measure; all dicts are keyed by block index."""
    if set(importance) != set(updates):
        raise ValueError(f"importance covers blocks {sorted(importance)}, updates cover {sorted(updates)}")
    layers = sorted(importance)
    critical = critical_layers(importance)
    imp = [importance[layer] for layer in layers]
    return Superficiality(
        model=model,
        importance=kind,
        n_layers=len(layers),
        spearman=spearman(imp, [updates[layer] for layer in layers]),
        spearman_relative=spearman(imp, [relative[layer] for layer in layers]),
        critical=tuple(critical),
        critical_share=critical_share(updates, critical),
        uniform_share=sum(n_params[layer] for layer in critical) / sum(n_params.values()),
    )
