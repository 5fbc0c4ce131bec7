"""Model merging for IMM (arXiv 2503.02103) and the mergekit task-vector family.

    from imm.merging import MergeSpec, merge
    spec = MergeSpec.from_dict({"merge_method": "imm", "base_model": theta0,
                                "models": [{"model": finetuned, "parameters": {"weight": 0.5, "density": 0.8}}],
                                "dtype": "bfloat16"})
    merge(spec, out_dir, seed=1234)
"""

from imm.merging.driver import merge, plan_merge, tensor_seed
from imm.merging.methods import METHODS
from imm.merging.spec import MergeSpec, ModelInput

__all__ = ["METHODS", "MergeSpec", "ModelInput", "merge", "plan_merge", "tensor_seed"]
