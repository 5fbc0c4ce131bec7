"""Merge arithmetic on hand-sized tensors; every expected number is derived in the docstring."""

import math

import pytest
import torch

from imm.merging import sparsify as sp
from imm.merging.methods import (METHODS, SPARSIFIERS, BaseUse, Sparsifier, TensorParams, generalized_task_arithmetic,
                                 layerwise_factors, slerp_pair)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gta(name: str, deltas, per_model, shared=None, seed=0):
    method = METHODS[name]
    shared = {k: p.default for k, p in method.shared.items()} | (shared or {})
    per_model = [{k: p.default for k, p in method.per_model.items()} | m for m in per_model]
    gens = [_gen(seed + i) for i in range(len(per_model))]
    return method.fn(torch.tensor(deltas, dtype=torch.float32), TensorParams(tuple(per_model), shared), gens)


def test_magnitude_keeps_top_k_and_l1_rescales():
    """δ = [0.1, -0.4, 0.3, -0.2], density 0.5 → k = 2 keeps -0.4 and 0.3.
    L1 rescale: ‖δ‖₁ = 1.0, kept ‖·‖₁ = 0.7, factor 1/0.7 → [0, -4/7, 3/7, 0]."""
    delta = torch.tensor([0.1, -0.4, 0.3, -0.2])
    assert sp.magnitude(delta.clone(), 0.5).tolist() == pytest.approx([0, -0.4, 0.3, 0])
    assert sp.magnitude(delta.clone(), 0.5, rescale=True).tolist() == pytest.approx([0, -4 / 7, 3 / 7, 0])


def test_magnitude_breaks_ties_by_lower_index_and_keeps_at_least_one():
    """|δ| = [0.2, 0.2, 0.1]; density 0.34 → k = ⌊1.02⌋ = 1; the tie at 0.2 goes to index 0.
    density 0.01 → ⌊0.03⌋ = 0, raised to 1."""
    delta = torch.tensor([0.2, -0.2, 0.1])
    assert sp.magnitude(delta.clone(), 0.34).tolist() == pytest.approx([0.2, 0, 0])
    assert sp.magnitude(delta.clone(), 0.01).tolist() == pytest.approx([0.2, 0, 0])


def test_top_k_mask_large_tensor_matches_sort():
    """Above 2^20 entries the sampled bracket and chunked passes are used (5·10⁶ entries span two
    chunks); the k largest magnitudes must equal a full sort's, ties at the threshold to the lower
    index: values are multiples of 1/1024 so ties are many."""
    values = (torch.randn(5_000_000, generator=_gen(3)) * 1024).round() / 1024
    k = 2_345_678
    mask = sp.top_k_mask(values, k)
    expected = torch.zeros_like(mask)
    expected[values.abs().argsort(descending=True, stable=True)[:k]] = True
    assert int(mask.sum()) == k and torch.equal(mask, expected)


def test_magnitude_outliers_drops_top_gamma_then_smallest():
    """δ = 1..10, density 0.5, γ = 0.1: keep 5, drop top ⌊1.0⌋ = 1 (the 10) and the 4 smallest → 5..9."""
    delta = torch.arange(1.0, 11.0)
    kept = sp.magnitude_outliers(delta, 0.5, gamma=0.1)
    assert kept.tolist() == [0, 0, 0, 0, 5, 6, 7, 8, 9, 0]


def test_random_drop_keep_rate_and_density_rescale():
    """DARE with density 0.8 and 1/density rescale: kept entries equal δ/0.8 = 1.25 exactly;
    over 200 000 entries the kept share is 0.8 ± 0.005 (5 sigma ≈ 0.0045)."""
    delta = torch.ones(200_000)
    out = sp.random_drop(delta, 0.8, _gen(1), rescale=True)
    kept = out != 0
    assert torch.all(out[kept] == 1.25)
    assert abs(kept.float().mean().item() - 0.8) < 0.005


def test_random_drop_is_reproducible_per_generator():
    delta = torch.randn(1000, generator=_gen(0))
    a = sp.random_drop(delta.clone(), 0.5, _gen(7))
    assert torch.equal(a, sp.random_drop(delta.clone(), 0.5, _gen(7)))
    assert not torch.equal(a, sp.random_drop(delta.clone(), 0.5, _gen(8)))


def test_random_drop_in_pieces_equals_whole():
    """One uniform per entry in flat order: two pieces from one generator = the whole at once."""
    delta = torch.randn(10_000, generator=_gen(0))
    whole = sp.random_drop(delta.clone(), 0.7, _gen(5), rescale=True)
    gen = _gen(5)
    pieces = torch.cat([sp.random_drop(delta[:3333].clone(), 0.7, gen, True),
                        sp.random_drop(delta[3333:].clone(), 0.7, gen, True)])
    assert torch.equal(whole, pieces)


def test_della_keep_probability_rises_with_rank():
    """Rows [1, 2, 3], density 0.5, ε = 0.1: ranks 0, 1, 2 → keep probabilities 0.4, 0.5, 0.6.
    Over 40 000 rows each column's keep share is within 0.02 of that (≥ 8 sigma)."""
    rows = torch.tensor([[1.0, 2.0, 3.0]]).repeat(40_000, 1)
    kept = sp.della_magprune(rows, 0.5, 0.1, _gen(2)) != 0
    assert kept.float().mean(dim=0).tolist() == pytest.approx([0.4, 0.5, 0.6], abs=0.02)


def test_sign_election_sum_and_count():
    """δ1 = [1, -2, 0.5], δ2 = [-3, 1, 0.5].
    sum: Σ = [-2, -1, 1] → elected [-, -, +] → agree δ1 [F, T, T], δ2 [T, F, T].
    count: Σ signs = [0, 0, 2] → ties elect + → agree δ1 [T, F, T], δ2 [F, T, T]."""
    deltas = torch.tensor([[1.0, -2.0, 0.5], [-3.0, 1.0, 0.5]])
    assert sp.sign_agreement(deltas, "sum").tolist() == [[False, True, True], [True, False, True]]
    assert sp.sign_agreement(deltas, "count").tolist() == [[True, False, True], [False, True, True]]


def test_ties_trim_elect_disjoint_mean():
    """δ1 = [1, -2, 0.5, 0.1], δ2 = [-3, 1, 0.5, 0.2], weights 1, density 0.5 (k = 2):
    trimmed δ1 = [1, -2, 0, 0], δ2 = [-3, 1, 0, 0]; Σ = [-2, -1, 0, 0] → elected [-, -, +, +];
    agreeing entries: δ2[0] = -3, δ1[1] = -2, none at 2 and 3 (zeros never agree) →
    disjoint mean [-3/1, -2/1, 0, 0] (empty divisors become 1)."""
    out = _gta("ties", [[1, -2, 0.5, 0.1], [-3, 1, 0.5, 0.2]], [{"weight": 1.0, "density": 0.5}] * 2)
    assert out.tolist() == pytest.approx([-3, -2, 0, 0])


def test_ties_weighted_normalised_mean():
    """Density 1, weights 0.5 and 1.5: wδ1 = [0.5, 1], wδ2 = [1.5, -3]; Σ = [2, -2] → elected [+, -];
    entry 0: both agree → (0.5 + 1.5)/(0.5 + 1.5) = 1; entry 1: only δ2 → -3/1.5 = -2."""
    out = _gta("ties", [[1, 2], [1, -2]], [{"weight": 0.5}, {"weight": 1.5}])
    assert out.tolist() == pytest.approx([1, -2])


def test_task_arithmetic_weights_and_lambda():
    """0.5·[2, 4] + 0.25·[4, -8] = [2, 0]; with λ = 2 → [4, 0]."""
    per_model = [{"weight": 0.5}, {"weight": 0.25}]
    assert _gta("task_arithmetic", [[2, 4], [4, -8]], per_model).tolist() == [2, 0]
    assert _gta("task_arithmetic", [[2, 4], [4, -8]], per_model, {"lambda": 2.0}).tolist() == [4, 0]


def test_imm_is_half_of_dare_rescaled_by_keep_rate():
    """imm defaults λ = 0.5, density 0.8: every kept entry of δ = 1 becomes 0.5 · 1/0.8 = 0.625."""
    out = _gta("imm", [[1.0] * 10_000], [{}])
    kept = out[out != 0]
    assert torch.all(kept == 0.625) and abs(kept.numel() / 10_000 - 0.8) < 0.02


def test_dare_rescales_by_inverse_density():
    """DARE's rescale is 1/density: δ = 1, weight 1, density 0.5 → kept entries are exactly 2."""
    out = _gta("dare_linear", [[1.0] * 1000], [{"weight": 1.0, "density": 0.5}])
    assert set(out.tolist()) == {0.0, 2.0}


def test_ties_with_rescale_matches_l1_like_mergekit():
    """Magnitude sparsifiers with `rescale: true` match the L1 norm (mergekit 0.1.5): δ = [4, 1, 1, 2],
    density 0.5 keeps 4 and 2, scaled by 8/6 → [16/3, 0, 0, 8/3]."""
    out = _gta("ties", [[4.0, 1.0, 1.0, 2.0]], [{"weight": 1.0, "density": 0.5}], {"rescale": True})
    assert out.tolist() == pytest.approx([16 / 3, 0, 0, 8 / 3])


def test_linear_average():
    """Weights 1 and 3 over [1, 2] and [3, 6]: normalised (1 + 9)/4 = 2.5, (2 + 18)/4 = 5;
    unnormalised [10, 20]."""
    tensors = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    params = TensorParams(({"weight": 1.0}, {"weight": 3.0}), {"normalize": True})
    assert METHODS["linear"].fn(tensors, params).tolist() == [2.5, 5]
    params = TensorParams(params.per_model, {"normalize": False})
    assert METHODS["linear"].fn(tensors, params).tolist() == [10, 20]


def test_slerp_endpoints_midpoint_and_parallel():
    """v0 = [1, 0], v1 = [0, 1] (θ = π/2): t = 0 → v0, t = 1 → v1, t = ½ → sin(π/4)/sin(π/2)·(v0 + v1)
    = [√½, √½]. Parallel [1, 0] and [2, 0] fall back to lerp: t = ½ → [1.5, 0]."""
    v0, v1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert slerp_pair(0.0, v0, v1).tolist() == pytest.approx([1, 0], abs=1e-7)
    assert slerp_pair(1.0, v0, v1).tolist() == pytest.approx([0, 1], abs=1e-7)
    assert slerp_pair(0.5, v0, v1).tolist() == pytest.approx([math.sqrt(0.5)] * 2)
    assert slerp_pair(0.5, v0, torch.tensor([2.0, 0.0])).tolist() == pytest.approx([1.5, 0])


def test_gta_leaves_empty_divisors_at_one():
    """Two opposite task vectors that cancel in a ties merge with density 1 (weights 1):
    Σ = [0] elects +; only δ1 = +1 agrees → 1/1 = 1."""
    out = generalized_task_arithmetic(torch.tensor([[1.0], [-1.0]]), TensorParams(
        ({"weight": 1.0, "density": 1.0},) * 2, {"normalize": True, "rescale": False}), [_gen(), _gen(1)],
        sparsify="magnitude", consensus="sum")
    assert out.tolist() == [1.0]


def test_an_unknown_sparsifier_or_consensus_is_refused_not_run_as_another():
    """The closed sets are enums: a name outside them raises, naming the choices, where it used to fall through to
    DELLA's MagPrune (sparsifier), to a count vote (consensus) or to releasing the critical blocks (imm_layerwise's
    direction). Each table entry is a member, and each sparsifier has its function."""
    params = TensorParams(({"weight": 1.0, "density": 0.5, "epsilon": 0.1},), {"normalize": False})
    with pytest.raises(ValueError, match="unknown sparsifier 'magprune'; choose one of magnitude, magnitude_outliers, "
                                         "random, della_magprune"):
        generalized_task_arithmetic(torch.ones(1, 4), params, [_gen()], sparsify="magprune", consensus=None)
    with pytest.raises(ValueError, match="unknown consensus 'majority'; choose one of sum, count"):
        generalized_task_arithmetic(torch.ones(1, 4), params, [_gen()], sparsify=None, consensus="majority")
    with pytest.raises(ValueError, match="unknown consensus 'majority'"):
        sp.sign_agreement(torch.ones(2, 3), "majority")
    with pytest.raises(ValueError, match="unknown direction 'sideways'; choose one of protect, release"):
        layerwise_factors([1.0, 0.0], "sideways", 0.5)
    assert set(SPARSIFIERS) == set(Sparsifier)
    assert all(isinstance(m.base, BaseUse) for m in METHODS.values())
