"""IMM's merge-back: θ_t = θ0 + λ·M(F_t − θ0), anchored at the original θ0 [paper, arXiv 2503.02103].

The run's `merge:` block is a merge spec: a method of `imm merge`, λ (`weight`), DARE's or the method's
keep rate (`density`) and the method's other parameters. λ means the same for every method [ours]:

    task-vector methods (imm, task_arithmetic, ties, dare_*, della*, breadcrumbs*)
        θ_t = θ0 + λ·M(F_t − θ0), M the method's operator on the one task vector; normalisation is
        off, since dividing by the weight would cancel λ (TIES and DELLA would give the whole M(F_t − θ0))
    linear   θ_t = (1 − λ)·θ0 + λ·F_t        (WiSE-FT's interpolation)
    slerp    θ_t = slerp(θ0, F_t; t = λ)

A list λ is interpolated over depth, as `imm merge` reads any parameter. The operators compared inside the
loop (docs/merging.md): `wise_ft` and `imm_layerwise` read λ as above; `lines` (α, β), `expo_dare` (α) and
`model_stock` (no λ: it is computed per tensor) take their own parameters from merge.parameters and do not
read merge.weight. `model_stock` and `model_stock_theta0` merge the iteration's two fine-tunes (`fine_tunes`: the
loop trains a second one with another seed) and measure their angle about the fine-tunes' start G (`start`).
`imm_layerwise` reads θ0's layer importance: merge.parameters.importance names the
measure (ablation, gradient or influence; influence when unset), which the loop measures once on θ0 and
passes as one number per block; `imm merge` YAML gives the numbers themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from imm.config import ImportanceKind, MergeConfig
from imm.errors import UserError
from imm.merging.driver import RECORD_NAME, merge
from imm.merging.methods import METHODS
from imm.merging.spec import MergeSpec


def _complement(weight: float | list[float]) -> float | list[float]:
    return [1 - w for w in weight] if isinstance(weight, list) else 1 - weight


DEFAULT_IMPORTANCE = ImportanceKind.INFLUENCE  # the measure imm_layerwise reads when merge.parameters.importance is unset [ours]


def fine_tunes(m: MergeConfig) -> int:
    """How many fine-tunes of one iteration the block merges: 2 for model_stock (it needs an angle), else 1."""
    return max(1, METHODS[m.method].min_models) if m.method in METHODS else 1


def importance_kind(m: MergeConfig) -> str | None:
    """The importance measure of θ0 an imm_layerwise block reads, or None (numbers given, or another method)."""
    if m.method != "imm_layerwise":
        return None
    kind = m.parameters.get("importance", DEFAULT_IMPORTANCE)
    if isinstance(kind, str) and kind not in tuple(ImportanceKind):
        raise UserError(f"parameters.importance must be one of {', '.join(ImportanceKind)} (θ0's measured importance) "
                        f"or one number per block, got {kind!r}")
    return kind if isinstance(kind, str) else None


def merge_back_spec(base: Path | str, finetuned: Path | str | Sequence[Path | str], m: MergeConfig, *,
                    folders_exist: bool = True, importance: Sequence[float] | None = None,
                    out_dtype: str = "float32", start: Path | str | None = None) -> MergeSpec:
    """The `imm merge` spec of θ_t (computed in float32, written in `out_dtype`); with `folders_exist=False` it
    checks the block before any model exists. `importance`: θ0's importance per block, for an imm_layerwise
    block that names a measure; `start`: the fine-tunes' init G, for a method that measures from it
    (model_stock)."""
    if m.method not in METHODS:
        raise UserError(f"method {m.method!r} is unknown; choose one of {', '.join(sorted(METHODS))}")
    method = METHODS[m.method]
    shared = {k: v for k, v in m.parameters.items() if k in method.shared or k not in method.per_model}
    per_model = {k: v for k, v in m.parameters.items() if k in method.per_model}
    if importance_kind(m) is not None:  # a measure's name: its numbers, or a stand-in while only checking
        shared["importance"] = list(importance) if importance is not None else [1.0]
    finetuned = [finetuned] if isinstance(finetuned, (str, Path)) else list(finetuned)
    if len(finetuned) != fine_tunes(m):
        raise UserError(f"merge_method {m.method} merges {fine_tunes(m)} fine-tune(s) of one iteration, got {len(finetuned)}")
    if m.method == "linear":
        models = [{"model": str(base), "parameters": {"weight": _complement(m.weight)}},
                  {"model": str(finetuned[0]), "parameters": {"weight": m.weight}}]
        raw: dict[str, Any] = {"merge_method": "linear", "models": models, "parameters": {**shared, "normalize": False}}
    elif m.method == "slerp":
        raw = {"merge_method": "slerp", "base_model": str(base), "models": [{"model": str(finetuned[0])}],
               "parameters": {**shared, "t": m.weight}}
    else:
        block = {"weight": m.weight, "density": m.density}
        own = {**{k: v for k, v in block.items() if k in method.per_model}, **per_model}
        normalize = {"normalize": False} if "normalize" in method.shared else {}
        models = [{"model": str(f), **({"parameters": own} if own else {})} for f in finetuned]
        raw = {"merge_method": m.method, "base_model": str(base), "models": models, "parameters": {**shared, **normalize}}
        if method.start and start is not None and str(start) != str(base):
            raw["start_model"] = str(start)
    return MergeSpec.from_dict({**raw, "dtype": "float32", "out_dtype": out_dtype}, folders_exist=folders_exist)


def check_merge_block(m: MergeConfig) -> None:
    """Everything about the run's merge block that can be checked before a model is trained."""
    try:
        merge_back_spec("θ0", [f"F_t{'′' * i}" for i in range(fine_tunes(m))], m, folders_exist=False)
    except UserError as err:
        raise UserError(f"the merge block (merge.method, merge.weight = λ, merge.parameters): {err}") from None


def merge_back(base: Path, finetuned: Path | Sequence[Path], out: Path, m: MergeConfig, seed: int,
               importance: Callable[[str], Sequence[float]] | None = None, out_dtype: str = "float32",
               start: Path | None = None) -> str:
    """θ_t written to `out` in `out_dtype`; `importance(kind)` gives θ0's importance per block where the block
    needs it; `start` is where the fine-tunes started (G). Returns the block in a few words, with model_stock's
    t per tensor."""
    kind = importance_kind(m)
    if kind is not None and importance is None:
        raise UserError(f"merge_method imm_layerwise reads θ0's {kind} importance, which only a run measures; "
                        "give parameters.importance as one number per block")
    values = importance(kind) if kind is not None else None
    merge(merge_back_spec(base, finetuned, m, importance=values, out_dtype=out_dtype, start=start), out, seed=seed)
    record = Path(out) / RECORD_NAME
    if not record.is_file():
        return describe(m)
    t = json.loads(record.read_text())["summary"]["t"]
    return f"{describe(m)}; t per tensor {t['min']:.3f} to {t['max']:.3f}, median {t['median']:.3f}"


def describe(m: MergeConfig) -> str:
    """The block in a few words: the method and what it reads (λ and density only where it reads them)."""
    return ", ".join([m.method, *settings_read(m)])


def settings_read(m: MergeConfig) -> list[str]:
    per_model = METHODS[m.method].per_model
    read = [f"λ {m.weight}"] if "weight" in per_model or m.method in ("linear", "slerp") else []
    read += [f"density {m.density}"] if "density" in per_model else []
    read += [f"{k} {v}" for k, v in m.parameters.items()]
    if importance_kind(m) is not None and "importance" not in m.parameters:
        read.append(f"importance {DEFAULT_IMPORTANCE}")
    return read
