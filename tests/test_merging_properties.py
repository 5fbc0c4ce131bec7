"""Properties every merge method must have, over random shapes and values (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from imm.merging.methods import METHODS, REQUIRED, TensorParams

# Methods whose every parameter but the weight (set below) has a default (imm_layerwise needs θ0's importance:
# tests/test_merge_operators.py)
TASK_VECTOR_METHODS = sorted(name for name, m in METHODS.items() if m.task_vectors and all(
    p.default is not REQUIRED for key, p in (*m.per_model.items(), *m.shared.items()) if key != "weight"))
WEIGHTED = [name for name in TASK_VECTOR_METHODS if "weight" in METHODS[name].per_model]  # λ per model


def _models(name: str, n: int) -> int:
    """n, within the number of models the method merges (model_stock: 2 or more; wise_ft: one)."""
    method = METHODS[name]
    return max(method.min_models, min(n, method.max_models or n))


def _params(name: str, n: int, **per_model) -> TensorParams:
    method = METHODS[name]
    model = {k: p.default for k, p in method.per_model.items()} | {"weight": 0.7} | per_model
    if name.startswith("della") and model["density"] < 1:
        model["epsilon"] = min(model["epsilon"], model["density"] / 2, (1 - model["density"]) / 2)
    shared = {k: p.default for k, p in method.shared.items()}
    return TensorParams((model,) * n, shared)


def _run(name, deltas, params, seed=0):
    """A method that reads the fine-tunes' start G gets G = θ0 (a zero task vector) as its last row."""
    gens = [torch.Generator().manual_seed(seed * 100 + i) for i in range(deltas.shape[0])]
    if METHODS[name].start:
        deltas = torch.cat([deltas, torch.zeros_like(deltas[:1])])
    return METHODS[name].fn(deltas.clone(), params, gens)


tensors = st.tuples(st.integers(1, 3), st.lists(st.integers(1, 6), min_size=1, max_size=3), st.integers(0, 2**31))


def _random(n, shape, seed):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


@settings(max_examples=25, deadline=None)
@given(tensors, st.sampled_from(TASK_VECTOR_METHODS), st.floats(0.05, 1.0))
def test_merging_a_model_with_itself_returns_it(case, name, density):
    """θ merged with copies of θ has task vectors 0; every task-vector method must return 0."""
    n, shape, seed = case
    n = _models(name, n)
    out = _run(name, torch.zeros((n, *shape)), _params(name, n, density=density))
    assert torch.equal(out, torch.zeros(shape))


@settings(max_examples=25, deadline=None)
@given(tensors)
def test_linear_and_slerp_of_identical_tensors_return_them(case):
    n, shape, seed = case
    x = _random(1, shape, seed)
    linear = METHODS["linear"].fn(x.repeat(n, *([1] * len(shape))), TensorParams(({"weight": 0.3},) * n,
                                                                                   {"normalize": True}))
    slerp = METHODS["slerp"].fn(x.repeat(2, *([1] * len(shape))), TensorParams((), {"t": 0.4}))
    assert torch.allclose(linear, x[0], atol=1e-6) and torch.allclose(slerp, x[0], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(tensors, st.sampled_from(WEIGHTED))
def test_zero_weight_returns_the_base(case, name):
    """λ = 0 (weight 0 for every model): the merged task vector is 0, so θ = θ0."""
    n, shape, seed = case
    n = _models(name, n)
    out = _run(name, _random(n, shape, seed), _params(name, n, weight=0.0, density=0.8))
    assert torch.equal(out.abs(), torch.zeros(shape))


@settings(max_examples=25, deadline=None)
@given(tensors, st.floats(0.0, 1.0))
def test_density_one_makes_dare_equal_task_arithmetic(case, weight):
    n, shape, seed = case
    deltas = _random(n, shape, seed)
    expected = _run("task_arithmetic", deltas, _params("task_arithmetic", n, weight=weight))
    for name in ("dare_linear", "imm"):
        assert torch.equal(_run(name, deltas, _params(name, n, weight=weight, density=1.0)), expected)


def test_mean_of_imm_over_seeds_is_half_the_task_vector():
    """imm keeps each entry with p = 0.8 and rescales by 1/0.8, so E[merge] = λδ. Over 400 seeds
    each entry's mean has standard deviation λ|δ|·√(0.25/400) = 0.025·λ|δ|; allow 6 sigma."""
    deltas = _random(1, (64,), 0)
    expected = 0.5 * deltas[0]
    mean = torch.stack([_run("imm", deltas, _params("imm", 1, weight=0.5), seed) for seed in range(400)]).mean(0)
    assert torch.all((mean - expected).abs() <= 6 * 0.025 * expected.abs() + 1e-7)
    single = _run("imm", deltas, _params("imm", 1, weight=0.5), 0)
    assert not torch.allclose(single, expected)  # one draw is not the mean


@pytest.mark.parametrize("name", ["dare_linear", "dare_ties"])
def test_mean_of_dare_over_seeds_approaches_task_arithmetic(name):
    """One task vector, density 0.5, 1/density rescale: each seed's merge is δ·Bernoulli(0.5)/0.5,
    so over 400 seeds each entry's mean has standard deviation |δ|·√(1/400) = 0.05|δ|; the
    relative L2 error of the mean is about 0.05 — allow 0.1."""
    deltas = _random(1, (4096,), 1)
    mean = torch.stack([_run(name, deltas, _params(name, 1, weight=1.0, density=0.5), s) for s in range(400)]).mean(0)
    assert (mean - deltas[0]).norm() / deltas[0].norm() < 0.1
