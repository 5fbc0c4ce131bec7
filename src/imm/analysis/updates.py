"""Per-layer, per-module update magnitudes between checkpoints of one architecture (docs/method.md §3).

One streaming pass over the base θ0 and a few named checkpoints X_i collects, per tensor, the Gram
matrix of the task vectors ⟨X_i − θ0, X_j − θ0⟩ and ‖θ0‖². These sums add up over tensors, so every
figure of a module, a block or the whole model follows from them without a second pass:

    delta_l2  = ‖X − θ0‖₂                      relative = delta_l2 / ‖θ0‖₂
    step_l2   = ‖X − P‖₂    (P = previous iteration's model θ_{t−1}; θ0 at t = 1)
    cos_prev  = cos(X − θ0, P − θ0)             (successive iterations' task vectors)
    pullback  = 1 − ⟨θ_t − θ0, F_t − θ0⟩ / ‖F_t − θ0‖²   (merged θ_t against its fine-tune F_t)

`pullback` is how far the merge moved F_t back toward θ0 along the fine-tune's own direction:
0 keeps the whole update, 1 returns to θ0; IMM with λ = 0.5 (DARE or not) gives 0.5 in expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from imm.analysis.weights import Weights, locate, shared_names

ALL = "all"  # the module name of a whole block's (or embed's, head's) row


@dataclass(frozen=True)
class LayerRow:
    model: str  # which checkpoint: finetuned | merged | model
    layer: str  # block index, or embed | head | other
    module: str  # module path inside the block, or "all"
    n_params: int
    delta_l2: float
    base_l2: float
    relative: float
    step_l2: float
    cos_prev: float | None
    pullback: float | None


@dataclass(frozen=True)
class GroupStats:
    """Additive sufficient statistics of a group of tensors, over k checkpoints.

    Plain Python floats, not tensors: thousands of small long-lived tensors would sit between the large
    chunk buffers in the C heap and keep it from shrinking, so memory would grow with the model."""

    n_params: int
    base_sq: float
    gram: tuple[tuple[float, ...], ...]  # (k, k): ⟨X_i − θ0, X_j − θ0⟩

    def __add__(self, other: GroupStats) -> GroupStats:
        gram = tuple(tuple(a + b for a, b in zip(r, s)) for r, s in zip(self.gram, other.gram))
        return GroupStats(self.n_params + other.n_params, self.base_sq + other.base_sq, gram)


def tensor_stats(base: Weights, others: list[Weights], name: str) -> GroupStats:
    """Gram statistics of one tensor, read chunk by chunk from every checkpoint in lockstep."""
    k = len(others)
    stats = GroupStats(0, 0.0, tuple((0.0,) * k for _ in range(k)))
    for pieces in zip(base.chunks(name), *(w.chunks(name) for w in others)):
        theta0, deltas = pieces[0], pieces[1:]  # each (chunk,), views of the checkpoints' read buffers
        for delta in deltas:
            delta.sub_(theta0)  # in place: the buffer is refilled by the next read anyway
        gram = tuple(tuple(float(torch.dot(a, b)) for b in deltas) for a in deltas)
        stats = stats + GroupStats(theta0.numel(), float(torch.dot(theta0, theta0)), gram)
    return stats


def stream_stats(base: Path, checkpoints: dict[str, Path]) -> tuple[list[str], dict[tuple[str, str], GroupStats]]:
    """One pass over all tensors: (checkpoint names, statistics per (layer, module))."""
    base_w = Weights(base)
    others = [Weights(path) for path in checkpoints.values()]
    names = shared_names([base_w, *others])  # headers only: fails before any tensor is read
    groups: dict[tuple[str, str], GroupStats] = {}
    for name in names:
        key = locate(name)
        stats = tensor_stats(base_w, others, name)
        groups[key] = groups[key] + stats if key in groups else stats
    return list(checkpoints), groups


def with_layer_totals(groups: dict[tuple[str, str], GroupStats]) -> dict[tuple[str, str], GroupStats]:
    """Add an (layer, "all") group summing each layer's modules; order: blocks by index, then embed/head."""
    totals: dict[str, GroupStats] = {}
    for (layer, _), stats in groups.items():
        totals[layer] = totals[layer] + stats if layer in totals else stats
    ordered: dict[tuple[str, str], GroupStats] = {}
    for layer in sorted(totals, key=layer_order):
        ordered[(layer, ALL)] = totals[layer]
        for key in sorted(k for k in groups if k[0] == layer):
            ordered[key] = groups[key]
    return ordered


def layer_order(layer: str) -> tuple[int, int]:
    rank = {"embed": 0, "head": 2, "other": 3}
    return (1, int(layer)) if layer.isdigit() else (rank.get(layer, 3), 0)


def layer_rows(
    names: list[str],
    groups: dict[tuple[str, str], GroupStats],
    model: str,
    *,
    previous: str | None = None,
    finetuned: str | None = None,
) -> list[LayerRow]:
    """Rows of layers.csv for checkpoint `model`; `previous`/`finetuned` name other streamed checkpoints."""
    x = names.index(model)
    p = names.index(previous) if previous else None
    f = names.index(finetuned) if finetuned else None
    return [_row(model, layer, module, stats, x, p, f) for (layer, module), stats in with_layer_totals(groups).items()]


def _row(model: str, layer: str, module: str, s: GroupStats, x: int, p: int | None, f: int | None) -> LayerRow:
    g = s.gram
    delta, base = math.sqrt(max(g[x][x], 0.0)), math.sqrt(s.base_sq)
    step = delta if p is None else math.sqrt(max(g[x][x] + g[p][p] - 2 * g[x][p], 0.0))
    cos = None if p is None else _ratio(g[x][p], math.sqrt(g[x][x] * g[p][p]))
    pull = None if f is None else _one_minus(_ratio(g[x][f], g[f][f]))
    return LayerRow(model, layer, module, s.n_params, delta, base, _ratio(delta, base) or 0.0, step, cos, pull)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _one_minus(value: float | None) -> float | None:
    return None if value is None else 1.0 - value

