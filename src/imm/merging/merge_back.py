"""IMM's merge-back: θ_t = θ0 + λ·M(F_t − θ0), anchored at the original θ0 [paper, arXiv 2503.02103].

The run's `merge:` block names M (any `imm merge` method), λ and DARE's keep rate; the merge engine
does the tensor work, exactly as `imm merge` does for a YAML spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imm.config import MergeConfig


def merge_back(base: Path, finetuned: Path, out: Path, m: "MergeConfig", seed: int) -> str:
    from imm.merging.driver import merge
    from imm.merging.spec import MergeSpec

    spec = MergeSpec.from_dict({
        "merge_method": m.method, "base_model": str(base), "dtype": "float32",
        "models": [{"model": str(finetuned), "parameters": {"weight": m.weight, "density": m.density}}],
    })
    merge(spec, out, seed=seed)
    return f"{m.method}, weight {m.weight}, density {m.density}"
