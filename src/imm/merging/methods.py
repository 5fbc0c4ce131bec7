"""Merge methods: pure functions on one tensor, listed in the one dict `METHODS`.

Task-vector methods (`task_vectors=True`) receive the stacked task vectors δᵢ = θᵢ - θ_base of one
tensor, shape (n, *S), float32, and return the merged task vector (*S); the driver adds the base
back. Following mergekit, these are one algorithm, generalized task arithmetic, with two switches:
how each δᵢ is sparsified and whether a sign consensus is elected (TIES, arXiv 2306.01708):

    δ̂ᵢ = sparsify(δᵢ);  mᵢ = [sign(wᵢδ̂ᵢ) = elected sign] (or 1 without consensus)
    merged = λ · Σᵢ mᵢ wᵢ δ̂ᵢ / (Σᵢ mᵢ wᵢ  if normalize else 1)

`imm` is θ0 + λ·DARE_p(F − θ0) of arXiv 2503.02103 (λ = weight = 0.5, keep rate 1 − p = 0.8,
rescale 1/(1 − p)). `linear` and `slerp` act on the weights themselves (`task_vectors=False`).
The merge-back operators compared inside the loop (docs/merging.md has a paragraph on each) are task-vector
methods too: `wise_ft`, `lines`, `expo_dare`, `model_stock`, `model_stock_theta0` and `imm_layerwise`; `lines`,
`expo_dare` and `imm_layerwise` read the tensor's place (`TensorParams.layer` of `layers` decoder blocks, its name
and shape). The Model Stock pair also reads the fine-tunes' common start G (`Method.start`) and reports each
tensor's ratio t (`Method.record`, in the output's merge_record.json).

An `elementwise` method computes each output entry from the same entry of its inputs (random
draws are one per entry, in flat order, from one generator per model), so the driver may feed it
consecutive pieces of the flattened tensor, shape (n, c), and get exactly the whole-tensor result.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch

from imm.merging import sparsify as sp
from imm.merging.sparsify import Consensus, closed

REQUIRED = object()  # default of a parameter the config must set


@dataclass(frozen=True)
class Param:
    """One parameter a method reads: its default and the closed range its values must lie in."""

    default: Any
    kind: type = float  # float, bool, str (one of `choices`) or list (one number per decoder block, not interpolated)
    choices: tuple[str, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # (low, high] instead of [low, high]


@dataclass(frozen=True)
class TensorParams:
    """Parameters resolved for one tensor: one dict per merged model, and the shared ones."""

    per_model: tuple[Mapping[str, Any], ...]
    shared: Mapping[str, Any]
    layer: int | None = None  # the decoder block this tensor belongs to; None: embeddings, final norm, head
    layers: int = 1  # L, the checkpoint's number of decoder blocks
    name: str = ""  # the tensor's name in the checkpoint
    shape: tuple[int, ...] = ()  # the whole tensor's shape (an elementwise method may see a flat piece of it)


class BaseUse(str, Enum):
    """How a method reads base_model."""

    REQUIRED = "required"  # task-vector methods (and slerp): the base is what the inputs are measured from
    OPTIONAL = "optional"  # linear: the base is one more weighted input


@dataclass(frozen=True)
class Method:
    fn: Callable[[torch.Tensor, TensorParams, Sequence[torch.Generator]], torch.Tensor]
    task_vectors: bool  # True: fn sees (n, *S) task vectors and returns a task vector
    elementwise: bool  # True: each output entry depends only on the same entry of the inputs
    base: BaseUse
    per_model: Mapping[str, Param] = field(default_factory=dict)
    shared: Mapping[str, Param] = field(default_factory=dict)
    min_models: int = 1
    max_models: int | None = None
    # True: fn also gets the task vector of the fine-tunes' common start G (spec `start_model`, the base when
    # unset) as one more row, after the n merged models: deltas is (n + 1, *S)
    start: bool = False
    # numbers the method reports about each tensor (a frozen dataclass), written to merge_record.json;
    # called on the same rows as fn, before it
    record: Callable[[torch.Tensor, TensorParams], Any] | None = None


# ---- generalized task arithmetic ---------------------------------------------------------------

Generators = Sequence[torch.Generator]  # one per merged model, each seeded from (seed, tensor, model)


class Sparsifier(str, Enum):
    """How one task vector is sparsified (mergekit's `SparsificationMethod`)."""

    MAGNITUDE = "magnitude"  # TIES: the top-k magnitudes
    MAGNITUDE_OUTLIERS = "magnitude_outliers"  # Model Breadcrumbs: the top γ and the smallest dropped
    RANDOM = "random"  # DARE: a random keep mask
    DELLA_MAGPRUNE = "della_magprune"  # DELLA: keep probability rising with magnitude rank


# (δ, per-model parameters, rescale, generator) → δ sparsified in place
SPARSIFIERS: dict[Sparsifier, Callable[[torch.Tensor, Mapping[str, Any], bool, torch.Generator], torch.Tensor]] = {
    Sparsifier.MAGNITUDE: lambda d, p, rescale, g: sp.magnitude(d, p["density"], rescale),
    Sparsifier.MAGNITUDE_OUTLIERS: lambda d, p, rescale, g: sp.magnitude_outliers(d, p["density"], p["gamma"], rescale),
    Sparsifier.RANDOM: lambda d, p, rescale, g: sp.random_drop(d, p["density"], g, rescale),
    Sparsifier.DELLA_MAGPRUNE: lambda d, p, rescale, g: sp.della_magprune(d, p["density"], p["epsilon"], g, rescale),
}


def generalized_task_arithmetic(deltas: torch.Tensor, params: TensorParams, generators: Generators, *,
                                sparsify: Sparsifier | str | None, consensus: Consensus | str | None) -> torch.Tensor:
    """(n, *S) task vectors → (*S) merged task vector. Consumes `deltas`: the result is a view
    of deltas[0], so a merge holds n task vectors and chunk-sized temporaries, nothing more."""
    rescale = params.shared.get("rescale", True)
    how = None if sparsify is None else SPARSIFIERS[closed(Sparsifier, sparsify)]
    consensus = None if consensus is None else closed(Consensus, consensus)
    for i, p in enumerate(params.per_model):
        if how is not None:
            how(deltas[i], p, rescale, generators[i])
    weights = torch.tensor([p["weight"] for p in params.per_model], dtype=deltas.dtype, device=deltas.device)
    flat = deltas.view(len(weights), -1)  # (n, N)
    for s in sp.chunks(flat.shape[1]):
        flat[0, s] = _combine(flat[:, s], weights, consensus, params.shared)
    return deltas[0]


def _combine(deltas: torch.Tensor, weights: torch.Tensor, consensus: Consensus | None, shared: Mapping) -> torch.Tensor:
    """One chunk (n, c) of sparsified task vectors → (c,): weight, elect signs, sum, normalise, λ."""
    weighted = deltas.mul_(weights.view(-1, 1))  # (n, c)
    if consensus is not None:
        agree = sp.sign_agreement(weighted, consensus)  # (n, c) bool
        merged = sp.sum_rows(weighted.masked_fill_(~agree, 0))
        divisor = torch.zeros_like(merged)
        for i, w in enumerate(weights.tolist()):  # Σᵢ wᵢ·[agreeᵢ], same order as a sum over dim 0
            divisor.add_(agree[i].to(divisor.dtype), alpha=w)
        divisor[divisor == 0] = 1
    else:
        merged = sp.sum_rows(weighted)
        divisor = weights.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if shared.get("normalize", False):
        merged /= divisor
    lam = shared.get("lambda", 1.0)
    if lam != 1:
        merged *= lam
    return merged


# ---- methods on the weights themselves ---------------------------------------------------------


def linear(tensors: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """Weighted average Σᵢ wᵢθᵢ / Σᵢ wᵢ (model soups, arXiv 2203.05482); without normalize, Σᵢ wᵢθᵢ."""
    result = torch.zeros_like(tensors[0])
    for tensor, p in zip(tensors, params.per_model):
        result.add_(tensor, alpha=p["weight"])
    if params.shared["normalize"]:
        result /= sum(p["weight"] for p in params.per_model)
    return result


def slerp_pair(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995,
               eps: float = 1e-8) -> torch.Tensor:
    """Spherical interpolation of two whole tensors: t = 0 gives v0, t = 1 gives v1; nearly
    parallel or antiparallel pairs (|cos| > dot_threshold) fall back to linear interpolation."""
    a, b = v0.flatten(), v1.flatten()
    if a.numel() == 0:
        return (1 - t) * v0 + t * v1
    norm_a = torch.linalg.vector_norm(a)
    norm_b = torch.linalg.vector_norm(b)
    norm_a = torch.where(norm_a > eps, norm_a, 1)
    norm_b = torch.where(norm_b > eps, norm_b, 1)
    dot = ((a / norm_a) * (b / norm_b)).sum().clamp(-1, 1)
    if dot.abs() > dot_threshold:
        return (1 - t) * v0 + t * v1
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    coef_a = torch.sin((1 - t) * theta) / sin_theta
    coef_b = torch.sin(t * theta) / sin_theta
    return coef_a * v0 + coef_b * v1


def slerp(tensors: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """tensors = (base, other); t = 0 returns the base."""
    return slerp_pair(params.shared["t"], tensors[0], tensors[1])


# ---- merge-back operators compared inside the loop ----------------------------------------------


def wise_ft(deltas: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """WiSE-FT (Wortsman et al., arXiv 2109.01903): θ = (1 − α)·θ0 + α·F, i.e. the task vector α·δ."""
    return deltas[0].mul_(params.per_model[0]["weight"])


def lines_scale(params: TensorParams) -> float:
    """LiNeS (Wang et al., arXiv 2410.17146): λ(ℓ) = α + β·ℓ/(L − 1) for block ℓ of L (ℓ/(L − 1) = 1 when
    L = 1, as mergekit places a lone block); embeddings, final norm and head stay at α."""
    alpha, beta = params.shared["alpha"], params.shared["beta"]
    if params.layer is None:
        return alpha
    return alpha + beta * (params.layer / (params.layers - 1) if params.layers > 1 else 1.0)


def lines(deltas: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """λ(ℓ)·Σᵢ δᵢ: the (summed) task vector scaled linearly with depth."""
    return sp.sum_rows(deltas).mul_(lines_scale(params))


EXPO_ATTENTION = ("self_attn", "attn", "attention")  # the first name inside a block that marks attention


def expo_factors(params: TensorParams) -> tuple[bool, float]:
    """(is DARE applied, extrapolation factor) of one tensor in FusionBench's ExPO with DARE for Llama: DARE on the
    weights of linear layers (2-D `.weight` tensors in the decoder blocks, and the head); extrapolation by α on the
    blocks' linear weights, α·attention_scale on attention's; biases, norms, embeddings and the head are not
    extrapolated."""
    if len(params.shape) != 2 or not params.name.endswith(".weight"):
        return False, 0.0  # biases and norms
    if params.layer is None:  # the head is a linear layer; embeddings are not
        return params.name.split(".")[-2] == "lm_head", 0.0
    inside = params.name.split(f".{params.layer}.", 1)[-1].split(".")[0]
    alpha = params.shared["alpha"]
    return True, alpha * params.shared["attention_scale"] if inside in EXPO_ATTENTION else alpha


def expo_dare(deltas: torch.Tensor, params: TensorParams, generators: Generators) -> torch.Tensor:
    """ExPO (Zheng et al., arXiv 2404.16792) with DARE, as FusionBench's `ExPOWithDareForLLama`: first R = θ0 +
    DARE_p(F − θ0) on linear weights (R = F elsewhere), then R + α·(R − θ0) on the blocks' linear weights. As a
    task vector: (1 + α_ℓ)·DARE_p(δ) where `expo_factors` extrapolates, DARE_p(δ) on the head, δ elsewhere."""
    dare, factor = expo_factors(params)
    kept = deltas[0]
    if dare:
        kept = sp.random_drop(kept, params.per_model[0]["density"], generators[0], rescale=True)
    return kept.mul_(1 + factor) if factor else kept


def stock_ratio(cos: float, n: int) -> float:
    """Model Stock's interpolation ratio t = n·cos θ / (1 + (n − 1)·cos θ) (Jang et al., arXiv 2403.19522, eq. 4);
    cos θ is clamped to [0, 1], so updates at 90° or more give t = 0: the anchor [ours]."""
    cos = min(1.0, max(0.0, cos))
    return n * cos / (1 + (n - 1) * cos)


@dataclass(frozen=True)
class StockAngle:
    """What Model Stock measured on one tensor: the mean pairwise cosine of the fine-tunes' updates from their common
    start, Fᵢ − G, and the ratio t it gives."""

    cos: float
    t: float


def stock_angle(deltas: torch.Tensor, params: TensorParams | None = None) -> StockAngle:
    """deltas (n + 1, *S): the n ≥ 2 task vectors Fᵢ − θ0, then the start's G − θ0. The cosines are taken between
    Fᵢ − G (float64, chunk by chunk); a zero update has no angle: its cosines count as 0."""
    flat = deltas.view(len(deltas), -1)  # (n + 1, N)
    n = len(flat) - 1
    gram = torch.zeros((n, n), dtype=torch.float64, device=flat.device)
    for s in sp.chunks(flat.shape[1]):
        rows = flat[:n, s].double() - flat[n, s].double()  # (n, c): Fᵢ − G
        gram += rows @ rows.T
    norms = gram.diagonal().sqrt().tolist()
    cosines = [float(gram[i, j]) / (norms[i] * norms[j]) if norms[i] > 0 and norms[j] > 0 else 0.0
               for i in range(n) for j in range(i + 1, n)]
    cos = sum(cosines) / len(cosines)
    return StockAngle(cos, stock_ratio(cos, n))


def model_stock(deltas: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """Model Stock (Jang et al., arXiv 2403.19522): θ = t·mean(Fᵢ) + (1 − t)·G, t from the angle between the
    Fᵢ − G of n ≥ 2 fine-tunes of one start G (`stock_angle`). As a task vector: (1 − t)·γ + t·mean(δᵢ), γ = G − θ0;
    with G = θ0 (no start_model), t·mean(δᵢ)."""
    t = stock_angle(deltas).t
    merged = sp.sum_rows(deltas[:-1]).mul_(t / (len(deltas) - 1))
    return merged.add_(deltas[-1], alpha=1 - t)


def model_stock_theta0(deltas: torch.Tensor, params: TensorParams, generators: Generators = ()) -> torch.Tensor:
    """Model Stock's t, pulled back to θ0 instead of G [ours]: θ = θ0 + t·(mean(Fᵢ) − θ0), t from the angle between
    the Fᵢ − G as in `model_stock`. The same as `model_stock` when G = θ0."""
    t = stock_angle(deltas).t
    return sp.sum_rows(deltas[:-1]).mul_(t / (len(deltas) - 1))


def summarize(records: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """min / median / max of each number of the per-tensor records (frozen dataclasses of floats)."""
    fields = list(vars(next(iter(records.values())))) if records else []
    values = {f: [getattr(r, f) for r in records.values()] for f in fields}
    return {f: {"min": min(v), "median": statistics.median(v), "max": max(v)} for f, v in values.items()}


class Direction(str, Enum):
    """Which way `imm_layerwise` moves λ: σ = −1 protects the critical blocks, +1 releases them."""

    PROTECT = "protect"
    RELEASE = "release"


def layerwise_factors(importance: Sequence[float], direction: Direction | str, strength: float) -> list[float]:
    """The per-block multipliers of λ in `imm_layerwise` [ours]: the critical blocks are the top quarter by θ0's
    importance (imm.analysis.superficiality.critical_layers: ⌈L/4⌉, ties to the lower index); with
    σ = −1 to protect them and +1 to release them, a critical block gets 1 + σ·s and every other block
    1 − σ·s·c/(L − c), so the mean over blocks stays 1 (the same total pull as uniform λ, redistributed)."""
    from imm.analysis.superficiality import critical_layers

    n = len(importance)
    critical = set(critical_layers(dict(enumerate(importance))))
    if len(critical) == n:  # one block: nothing to redistribute
        return [1.0] * n
    sigma = -1.0 if closed(Direction, direction) is Direction.PROTECT else 1.0
    rest = 1 - sigma * strength * len(critical) / (n - len(critical))
    return [1 + sigma * strength if i in critical else rest for i in range(n)]


def imm_layerwise(deltas: torch.Tensor, params: TensorParams, generators: Generators) -> torch.Tensor:
    """IMM with a per-block λ: θ = θ0 + λ_ℓ·DARE_p(F − θ0), λ_ℓ = λ·layerwise_factors(importance)[ℓ];
    embeddings, final norm and head keep λ."""
    p, shared = params.per_model[0], params.shared
    factor = 1.0
    if params.layer is not None:
        factor = layerwise_factors(shared["importance"], shared["direction"], shared["strength"])[params.layer]
    kept = sp.random_drop(deltas[0], p["density"], generators[0], rescale=True)
    return kept.mul_(p["weight"] * factor)


# ---- the one table -----------------------------------------------------------------------------

_WEIGHT = Param(REQUIRED)
_DENSITY = Param(1.0, low=0.0, high=1.0, low_open=True)
_GAMMA = Param(0.01, low=0.0, high=1.0)
_EPSILON = Param(0.15, low=0.0, high=1.0)
_LAMBDA = Param(1.0, low=0.0)


def _gta(sparsify: str | None, consensus: str | None, normalize: bool, rescale: bool,
         extra: Mapping[str, Param] = {}) -> Method:
    sparsify = None if sparsify is None else closed(Sparsifier, sparsify)
    return Method(
        fn=partial(generalized_task_arithmetic, sparsify=sparsify,
                   consensus=None if consensus is None else closed(Consensus, consensus)),
        task_vectors=True,
        elementwise=sparsify in (None, Sparsifier.RANDOM),
        base=BaseUse.REQUIRED,
        per_model={"weight": _WEIGHT, "density": _DENSITY, **extra},
        shared={"normalize": Param(normalize, bool), "rescale": Param(rescale, bool), "lambda": _LAMBDA},
    )


def _stock(fn: Callable) -> Method:
    return Method(fn, task_vectors=True, elementwise=False, base=BaseUse.REQUIRED, min_models=2, start=True,
                  record=stock_angle)


METHODS: dict[str, Method] = {
    "linear": Method(linear, task_vectors=False, elementwise=True, base=BaseUse.OPTIONAL, per_model={"weight": _WEIGHT},
                     shared={"normalize": Param(True, bool)}),
    "slerp": Method(slerp, task_vectors=False, elementwise=False, base=BaseUse.REQUIRED,
                    shared={"t": Param(REQUIRED, low=0.0, high=1.0)}, min_models=1, max_models=1),
    "task_arithmetic": _gta(None, None, normalize=False, rescale=False),
    "ties": _gta("magnitude", "sum", normalize=True, rescale=False),
    "dare_linear": _gta("random", None, normalize=False, rescale=True),
    "dare_ties": _gta("random", "sum", normalize=False, rescale=True),
    "breadcrumbs": _gta("magnitude_outliers", None, normalize=False, rescale=False, extra={"gamma": _GAMMA}),
    "breadcrumbs_ties": _gta("magnitude_outliers", "sum", normalize=False, rescale=False, extra={"gamma": _GAMMA}),
    "della": _gta("della_magprune", "sum", normalize=True, rescale=True, extra={"epsilon": _EPSILON}),
    "della_linear": _gta("della_magprune", None, normalize=False, rescale=True, extra={"epsilon": _EPSILON}),
    # IMM (arXiv 2503.02103): θ0 + λ·DARE_p(F − θ0), λ = 0.5, p = 0.2, rescale 1/(1 − p), no normalisation.
    "imm": Method(
        fn=partial(generalized_task_arithmetic, sparsify=Sparsifier.RANDOM, consensus=None),
        task_vectors=True,
        elementwise=True,
        base=BaseUse.REQUIRED,
        per_model={"weight": Param(0.5, low=0.0, high=1.0), "density": Param(0.8, low=0.0, high=1.0, low_open=True)},
    ),
    "wise_ft": Method(wise_ft, task_vectors=True, elementwise=True, base=BaseUse.REQUIRED,
                      per_model={"weight": Param(0.5, low=0.0, high=1.0)}, max_models=1),
    "lines": Method(lines, task_vectors=True, elementwise=True, base=BaseUse.REQUIRED,
                    shared={"alpha": Param(0.25, low=0.0), "beta": Param(0.5)}),
    # FusionBench's config/method/linear/llama_expo_with_dare.yaml: α 0.1, attention 1.0, DARE sparsity 0.5
    "expo_dare": Method(expo_dare, task_vectors=True, elementwise=True, base=BaseUse.REQUIRED,
                        per_model={"density": Param(0.5, low=0.0, high=1.0, low_open=True)},
                        shared={"alpha": Param(0.1, low=0.0), "attention_scale": Param(1.0, low=0.0)}, max_models=1),
    "model_stock": _stock(model_stock),
    "model_stock_theta0": _stock(model_stock_theta0),
    "imm_layerwise": Method(
        imm_layerwise, task_vectors=True, elementwise=True, base=BaseUse.REQUIRED,
        per_model={"weight": Param(0.5, low=0.0, high=1.0), "density": Param(0.8, low=0.0, high=1.0, low_open=True)},
        shared={"importance": Param(REQUIRED, list), "direction": Param(Direction.PROTECT.value, str, tuple(d.value for d in Direction)),
                "strength": Param(0.5, low=0.0, high=1.0)},
        max_models=1,
    ),
}
