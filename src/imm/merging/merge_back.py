"""IMM's merge-back: θ_t = θ0 + λ·M(F_t − θ0), anchored at the original θ0 [paper, arXiv 2503.02103].

The run's `merge:` block is a merge spec: a method of `imm merge`, λ (`weight`), DARE's or the method's
keep rate (`density`) and the method's other parameters. λ means the same for every method [ours]:

    task-vector methods (imm, task_arithmetic, ties, dare_*, della*, breadcrumbs*)
        θ_t = θ0 + λ·M(F_t − θ0), M the method's operator on the one task vector; normalisation is
        off, since dividing by the weight would cancel λ (TIES and DELLA would give the whole M(F_t − θ0))
    linear   θ_t = (1 − λ)·θ0 + λ·F_t        (WiSE-FT's interpolation)
    slerp    θ_t = slerp(θ0, F_t; t = λ)

A list λ is interpolated over depth, as `imm merge` reads any parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imm.config import MergeConfig
    from imm.merging.spec import MergeSpec


def _complement(weight: float | list[float]) -> float | list[float]:
    return [1 - w for w in weight] if isinstance(weight, list) else 1 - weight


def merge_back_spec(base: Path | str, finetuned: Path | str, m: "MergeConfig", *, folders_exist: bool = True) -> "MergeSpec":
    """The `imm merge` spec of θ_t; with `folders_exist=False` it checks the block before any model exists."""
    from imm.merging.methods import METHODS
    from imm.merging.spec import MergeSpec
    from imm.errors import UserError

    if m.method not in METHODS:
        raise UserError(f"method {m.method!r} is unknown; choose one of {', '.join(sorted(METHODS))}")
    method = METHODS[m.method]
    shared = {k: v for k, v in m.parameters.items() if k in method.shared or k not in method.per_model}
    per_model = {k: v for k, v in m.parameters.items() if k in method.per_model}
    if m.method == "linear":
        models = [{"model": str(base), "parameters": {"weight": _complement(m.weight)}},
                  {"model": str(finetuned), "parameters": {"weight": m.weight}}]
        raw: dict[str, Any] = {"merge_method": "linear", "models": models, "parameters": {**shared, "normalize": False}}
    elif m.method == "slerp":
        raw = {"merge_method": "slerp", "base_model": str(base), "models": [{"model": str(finetuned)}],
               "parameters": {**shared, "t": m.weight}}
    else:
        own = {"weight": m.weight, **({"density": m.density} if "density" in method.per_model else {}), **per_model}
        normalize = {"normalize": False} if "normalize" in method.shared else {}
        raw = {"merge_method": m.method, "base_model": str(base), "models": [{"model": str(finetuned), "parameters": own}],
               "parameters": {**shared, **normalize}}
    return MergeSpec.from_dict({**raw, "dtype": "float32"}, folders_exist=folders_exist)


def check_merge_block(m: "MergeConfig") -> None:
    """Everything about the run's merge block that can be checked before a model is trained."""
    from imm.errors import UserError

    try:
        merge_back_spec("θ0", "F_t", m, folders_exist=False)
    except UserError as err:
        raise UserError(f"the merge block (merge.method, merge.weight = λ, merge.parameters): {err}") from None


def merge_back(base: Path, finetuned: Path, out: Path, m: "MergeConfig", seed: int) -> str:
    from imm.merging.driver import merge

    merge(merge_back_spec(base, finetuned, m), out, seed=seed)
    return f"{m.method}, λ {m.weight}, density {m.density}"
