"""The run's merge block is a merge spec, and λ means the same for every method:
θ_t = θ0 + λ·M(F_t − θ0) for the task-vector methods (no normalisation dividing λ away),
(1 − λ)·θ0 + λ·F_t for linear, slerp(θ0, F_t; λ) for slerp. Checked on hand-built pairs."""

import pytest
import torch
from safetensors.torch import load_file

from imm.config import MergeConfig
from imm.preflight import load_config
from imm.errors import UserError
from imm.merging.merge_back import merge_back, merge_back_spec

from tiny import tiny_llama

SHIFT = 0.2  # F = θ0 + 0.2 on every entry; λ = 0.5, so a full update adds 0.1


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    model = tiny_llama(32, hidden=16, heads=2)
    model.save_pretrained(root / "base")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(SHIFT)
    model.save_pretrained(root / "shifted")
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(SHIFT).mul_(2)
    model.save_pretrained(root / "doubled")  # F = 2·θ0: parallel to θ0
    return root


def values(delta: torch.Tensor) -> set[float]:
    return {round(v, 5) for v in delta.unique().tolist()}


def update(pair, out, method, other="shifted", **fields):
    merge_back(pair / "base", pair / other, out, MergeConfig(method=method, weight=0.5, **fields), seed=1)
    base, merged = load_file(pair / "base" / "model.safetensors"), load_file(out / "model.safetensors")
    return torch.cat([(merged[k] - base[k]).flatten() for k in base])


@pytest.mark.parametrize("method", ["imm", "task_arithmetic", "ties", "dare_ties", "della", "della_linear",
                                    "breadcrumbs", "linear"])
def test_a_full_update_moves_theta_by_lambda_times_the_task_vector(pair, tmp_path, method):
    """density 1 keeps every entry (breadcrumbs: gamma 0 drops no outlier): θ_t − θ0 = 0.5·0.2 = 0.1 everywhere,
    for TIES and DELLA too (their normalisation would have given the whole 0.2)."""
    extra = {"parameters": {"gamma": 0.0}} if method == "breadcrumbs" else {}
    delta = update(pair, tmp_path / method, method, density=1.0, **extra)
    assert torch.allclose(delta, torch.full_like(delta, 0.1), atol=1e-6), method


def test_sparsifying_methods_keep_their_density(pair, tmp_path):
    """TIES at density 0.5 keeps half the entries of each tensor, unscaled: 0.1 or 0; DARE at 0.5 keeps a random
    half, rescaled by 1/0.5: 0.2 or 0 (IMM's own keep rate 0.8 gives 0.125 or 0)."""
    ties = update(pair, tmp_path / "ties", "ties", density=0.5)
    assert values(ties) == {0.0, 0.1} and abs((ties != 0).float().mean() - 0.5) < 0.01
    dare = update(pair, tmp_path / "dare", "dare_linear", density=0.5)
    assert values(dare) == {0.0, 0.2} and abs((dare != 0).float().mean() - 0.5) < 0.05
    imm = update(pair, tmp_path / "imm", "imm", density=0.8)
    assert values(imm) == {0.0, 0.125} and abs((imm != 0).float().mean() - 0.8) < 0.05


def test_slerp_interpolates_at_lambda(pair, tmp_path):
    """F = 2·θ0 is parallel to θ0, where slerp is the straight line: θ_t = θ0 + 0.5·(2θ0 − θ0) = 1.5·θ0."""
    delta = update(pair, tmp_path / "slerp", "slerp", other="doubled")
    base = torch.cat([t.flatten() for t in load_file(pair / "base" / "model.safetensors").values()])
    assert torch.allclose(delta, 0.5 * base, atol=1e-6)
    assert merge_back_spec("a", "b", MergeConfig(method="slerp", weight=0.3), folders_exist=False).parameters["t"] == 0.3


@pytest.mark.parametrize("override, message", [
    ("merge.method=bogus", "method 'bogus' is unknown"),
    ("merge.parameters={gamma: 0.1}", "unknown parameter 'gamma' for merge_method imm"),
    ("merge.weight=1.5", "= 1.5 is out of range"),
])
def test_a_bad_merge_block_is_refused_when_the_config_loads(override, message):
    with pytest.raises(UserError, match=message):
        load_config("smoke", (override,))
