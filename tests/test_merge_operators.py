"""The merge-back operators compared inside the loop: wise_ft, lines, expo_dare, model_stock, imm_layerwise.
Pure tensor functions on hand-sized task vectors, then each through an `imm merge` spec and the run's merge
block on a hand-built pair; every expected number is derived in the docstring."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from imm.config import MergeConfig
from imm.preflight import load_config
from imm.errors import UserError
from imm.merging import MergeSpec, merge
from imm.merging.merge_back import merge_back, merge_back_spec
from imm.merging.methods import (METHODS, StockAngle, TensorParams, layerwise_factors, lines_scale, stock_angle,
                                 stock_ratio)

from tiny import tiny_llama


def _run(name, deltas, per_model=({},), shared=None, layer=None, layers=1, seed=0, start=None, tensor="", shape=()):
    """One tensor through METHODS[name]; a method that reads the fine-tunes' start gets `start` (G − θ0; zeros: G = θ0)
    as its last row."""
    method = METHODS[name]
    shared = {k: p.default for k, p in method.shared.items()} | (shared or {})
    per_model = [{k: p.default for k, p in method.per_model.items()} | m for m in per_model]
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(per_model))]
    params = TensorParams(tuple(per_model), shared, layer, layers, tensor, shape)
    if method.start:
        deltas = [*deltas, start if start is not None else [0.0] * len(deltas[0])]
    return method.fn(torch.tensor(deltas, dtype=torch.float32), params, gens)


def test_wise_ft_scales_the_task_vector_by_alpha():
    """(1 − α)θ0 + αF = θ0 + α·δ: δ = [2, −4], α = 0.25 → [0.5, −1]."""
    assert _run("wise_ft", [[2.0, -4.0]], [{"weight": 0.25}]).tolist() == [0.5, -1.0]


def test_lines_scales_linearly_with_depth_and_keeps_alpha_outside_the_blocks():
    """α = 0.25, β = 0.5, L = 5: block 0 → 0.25, block 2 → 0.25 + 0.5·2/4 = 0.5, block 4 → 0.75; no block → 0.25;
    a lone block (L = 1) sits at depth 1 → 0.75. δ1 + δ2 = [1, 2] + [1, 2] = [2, 4] at block 2 → [1, 2]."""
    shared = {"alpha": 0.25, "beta": 0.5}
    scale = lambda layer, layers=5: lines_scale(TensorParams((), shared, layer, layers))  # noqa: E731
    assert [scale(0), scale(2), scale(4), scale(None), scale(0, 1)] == [0.25, 0.5, 0.75, 0.25, 0.75]
    assert _run("lines", [[1.0, 2.0], [1.0, 2.0]], [{}, {}], shared, layer=2, layers=5).tolist() == [1.0, 2.0]


MLP, ATTN = "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"


def test_expo_dare_is_fusionbench_expo_with_dare_on_a_hand_computed_case():
    """FusionBench's ExPOWithDareForLLama, written out: R = θ0 + DARE_p(F − θ0), then R + α·(R − θ0). θ0 = [1, 1, 1, 1],
    F = [2, 3, 0, 5] (δ = [1, 2, −1, 4]), p = 0.5, α = 0.1: DARE keeps the entries whose uniform draw u < 0.5 and
    doubles them; R − θ0 = keep·2δ, result − θ0 = 1.1·keep·2δ = keep·[2.2, 4.4, −2.2, 8.8]. The draws are the
    generator's own, so the reference is computed here from them, independently of the operator's code."""
    theta0, finetuned = torch.ones(4), torch.tensor([2.0, 3.0, 0.0, 5.0])
    keep = torch.rand(4, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < int(keep.sum()) < 4  # the case drops some entries and keeps others
    r = theta0 + keep * (finetuned - theta0) / 0.5
    reference = r + 0.1 * (r - theta0)
    got = _run("expo_dare", [(finetuned - theta0).tolist()], [{"density": 0.5}], {"alpha": 0.1}, layer=0, layers=2,
               tensor=MLP, shape=(2, 2))
    assert (got + theta0).tolist() == pytest.approx(reference.tolist())


def test_expo_dare_touches_linear_weights_only_as_fusionbench_defaults():
    """δ = [1, −2], density 1 (nothing dropped), α = 0.1: a block's MLP weight → 1.1·δ = [1.1, −2.2]; attention with
    attention_scale 0.5 → (1 + 0.05)·δ = [1.05, −2.1]; a norm (1-D), a bias, the embeddings and the head → δ (R = F:
    DARE keeps the head's expectation, and nothing outside the blocks is extrapolated). With the defaults (density 0.5)
    each MLP entry of δ = 1 is 0 (dropped) or 2·1.1 = 2.2, about half each; the head's 0 or 2; the embeddings' all 1."""
    run = lambda tensor, shape, layer=0, **kw: _run("expo_dare", kw.pop("d", [[1.0, -2.0]]), [kw.pop("own", {"density": 1.0})],  # noqa: E731
                                                    {"alpha": 0.1, **kw}, layer=layer, layers=2, tensor=tensor, shape=shape)
    assert run(MLP, (2, 1)).tolist() == pytest.approx([1.1, -2.2])
    assert run(ATTN, (2, 1), attention_scale=0.5).tolist() == pytest.approx([1.05, -2.1])
    assert run("model.layers.0.input_layernorm.weight", (2,)).tolist() == [1.0, -2.0]
    assert run("model.layers.0.self_attn.q_proj.bias", (2,)).tolist() == [1.0, -2.0]
    assert run("model.embed_tokens.weight", (2, 1), layer=None).tolist() == [1.0, -2.0]
    assert run("lm_head.weight", (2, 1), layer=None).tolist() == [1.0, -2.0]
    ones = [[1.0] * 20_000]
    mlp = run(MLP, (100, 200), d=ones, own={})
    assert mlp.unique().tolist() == pytest.approx([0.0, 2.2]) and abs((mlp > 0).float().mean() - 0.5) < 0.02
    assert run("lm_head.weight", (100, 200), layer=None, d=ones, own={}).unique().tolist() == [0.0, 2.0]
    assert run("model.embed_tokens.weight", (100, 200), layer=None, d=ones, own={}).unique().tolist() == [1.0]


def test_model_stock_ratio_from_the_angle():
    """t = n·cos/(1 + (n − 1)·cos): δ1 = [1, 0], δ2 = [1, 1] have cos = 1/√2, t = √2/(1 + 1/√2) = 2(√2 − 1) ≈ 0.8284,
    mean [1, 0.5] → [0.8284, 0.4142]. Orthogonal [1, 0], [0, 1]: cos 0 → t = 0, the base. Parallel (cos 1): t = 1,
    the mean. Opposite: cos −1 clamps to 0 → the base. A zero task vector counts as cos 0."""
    t = 2 * (math.sqrt(2) - 1)
    assert stock_ratio(1 / math.sqrt(2), 2) == pytest.approx(t)
    assert _run("model_stock", [[1.0, 0.0], [1.0, 1.0]], [{}, {}]).tolist() == pytest.approx([t, t / 2])
    assert _run("model_stock", [[1.0, 0.0], [0.0, 1.0]], [{}, {}]).tolist() == [0.0, 0.0]
    assert _run("model_stock", [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], [{}] * 3).tolist() == pytest.approx([2.0, 4.0])
    assert _run("model_stock", [[1.0, 2.0], [-1.0, -2.0]], [{}, {}]).tolist() == [0.0, 0.0]
    assert _run("model_stock", [[1.0, 2.0], [0.0, 0.0]], [{}, {}]).tolist() == [0.0, 0.0]


def test_model_stock_measures_the_angle_about_the_fine_tunes_common_start():
    """Both fine-tunes start from G = θ0 + γ, γ = [2, 0, 0], and move independently: F − G = [0, 1, 0], F′ − G = [0, 0, 1].
    About θ0 (the earlier definition) δ = [2, 1, 0] and [2, 0, 1] have cos = 4/5, so t = 1.6/1.8 = 0.889, nearly the
    plain average. About G they are orthogonal: cos 0, t = 0, so model_stock (Jang et al.: t·mean(F) + (1 − t)·G)
    returns G, and model_stock_theta0 [ours] (θ0 + t·(mean(F) − θ0)) returns θ0. With F′ − G = [0, 1, 1]: cos = 1/√2,
    t = 2(√2 − 1); model_stock → γ + t·(mean δ − γ) = [2, t, t/2], model_stock_theta0 → t·mean δ = t·[2, 1, 0.5]."""
    old = stock_angle(torch.tensor([[2.0, 1, 0], [2, 0, 1], [0, 0, 0]]))
    assert (old.cos, old.t) == pytest.approx((0.8, 8 / 9))
    deltas, start = [[2.0, 1.0, 0.0], [2.0, 0.0, 1.0]], [2.0, 0.0, 0.0]
    assert stock_angle(torch.tensor([*deltas, start])) == StockAngle(0.0, 0.0)
    assert _run("model_stock", deltas, [{}, {}], start=start).tolist() == [2.0, 0.0, 0.0]
    assert _run("model_stock_theta0", deltas, [{}, {}], start=start).tolist() == [0.0, 0.0, 0.0]
    t = 2 * (math.sqrt(2) - 1)
    deltas = [[2.0, 1.0, 0.0], [2.0, 1.0, 1.0]]
    assert _run("model_stock", deltas, [{}, {}], start=start).tolist() == pytest.approx([2, t, t / 2])
    assert _run("model_stock_theta0", deltas, [{}, {}], start=start).tolist() == pytest.approx([2 * t, t, t / 2])


IMPORTANCE = [0.1, 0.9, 0.3, 0.2, 0.8, 0.05, 0.4, 0.0]  # critical quarter (⌈8/4⌉ = 2 blocks): 1 and 4


def test_layerwise_factors_protect_or_release_the_critical_quarter_keeping_the_mean():
    """s = 0.5, c = 2 of L = 8. protect: critical 1 − 0.5 = 0.5, others 1 + 0.5·2/6 = 7/6;
    release: critical 1.5, others 1 − 1/6 = 5/6. Either way the mean is (2·0.5 + 6·7/6)/8 = 1."""
    protect = layerwise_factors(IMPORTANCE, "protect", 0.5)
    release = layerwise_factors(IMPORTANCE, "release", 0.5)
    assert protect == pytest.approx([7 / 6, 0.5, 7 / 6, 7 / 6, 0.5, 7 / 6, 7 / 6, 7 / 6])
    assert release == pytest.approx([5 / 6, 1.5, 5 / 6, 5 / 6, 1.5, 5 / 6, 5 / 6, 5 / 6])
    assert sum(protect) / 8 == pytest.approx(1) and sum(release) / 8 == pytest.approx(1)
    assert layerwise_factors([3.0], "protect", 0.5) == [1.0]  # one block: nothing to move λ to


def test_imm_layerwise_is_dare_at_the_block_lambda():
    """λ = 0.5, protect, s = 0.5: block 1 (critical) gets 0.5·0.5 = 0.25, block 0 gets 0.5·7/6 = 7/12, embeddings λ = 0.5.
    Density 1 keeps every entry; density 0.8 keeps about 80%, each 0.25/0.8 = 0.3125 at block 1."""
    shared = {"importance": IMPORTANCE, "direction": "protect", "strength": 0.5}
    run = lambda layer, density=1.0: _run("imm_layerwise", [[1.0] * 10_000], [{"weight": 0.5, "density": density}],  # noqa: E731
                                          shared, layer=layer, layers=8)
    assert set(run(1).tolist()) == {0.25} and run(0).unique().tolist() == pytest.approx([7 / 12])
    assert set(run(None).tolist()) == {0.5}
    sparse = run(1, 0.8)
    assert sparse.unique().tolist() == pytest.approx([0.0, 0.3125]) and abs((sparse != 0).float().mean() - 0.8) < 0.02


# --- through `imm merge` and the run's merge block, on a two-block Llama ------------------------------

SHIFT = 0.2


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """θ0, F = θ0 + 0.2 and F′ = θ0 + 0.4 on every entry; 2 decoder blocks."""
    root = tmp_path_factory.mktemp("pair")
    model = tiny_llama(32, hidden=16, heads=2)
    model.save_pretrained(root / "base")
    for name in ("shifted", "shifted_twice"):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(SHIFT)
        model.save_pretrained(root / name)
    return root


def updates(pair, out) -> dict[str, set[float]]:
    base, merged = load_file(pair / "base" / "model.safetensors"), load_file(out / "model.safetensors")
    return {k: {round(v, 5) for v in (merged[k] - base[k]).unique().tolist()} for k in base}


def where(found: dict[str, set[float]], part: str) -> set[float]:
    return set().union(*(v for k, v in found.items() if part in k))


def yaml_merge(pair, out, method, models=("shifted",), parameters=None, own=None):
    raw = {"merge_method": method, "base_model": str(pair / "base"), "dtype": "float32",
           "models": [{"model": str(pair / m), **({"parameters": own} if own else {})} for m in models],
           "parameters": parameters or {}}
    merge(MergeSpec.from_dict(raw), out, seed=1)
    return updates(pair, out)


def test_each_operator_through_an_imm_merge_spec(pair, tmp_path):
    """F − θ0 = 0.2 everywhere. wise_ft λ 0.5 → 0.1. lines α 0.25, β 0.5 over 2 blocks: block 0 → 0.05,
    block 1 → 0.15, embeddings and norms → 0.05. expo_dare density 1, α 0.1 → 0.22 on the blocks' linear weights, 0.2
    elsewhere (norms, embeddings, head). model_stock of 0.2 and
    0.4 (parallel, t = 1) → their mean 0.3. imm_layerwise, importance [1, 0] (critical: block 0), protect s 0.5,
    density 1: block 0 → 0.5·0.5·0.2 = 0.05, block 1 → 0.5·1.5·0.2 = 0.15, elsewhere 0.1."""
    assert where(yaml_merge(pair, tmp_path / "w", "wise_ft", own={"weight": 0.5}), "") == {0.1}
    lines = yaml_merge(pair, tmp_path / "l", "lines", parameters={"alpha": 0.25, "beta": 0.5})
    assert where(lines, "layers.0.") == {0.05} and where(lines, "layers.1.") == {0.15}
    assert where(lines, "embed_tokens") | where(lines, "model.norm") == {0.05}
    expo = yaml_merge(pair, tmp_path / "e", "expo_dare", own={"density": 1.0}, parameters={"alpha": 0.1})
    assert where(expo, "_proj") == {0.22} and where(expo, "norm") | where(expo, "embed") | where(expo, "lm_head") == {0.2}
    assert where(yaml_merge(pair, tmp_path / "m", "model_stock", models=("shifted", "shifted_twice")), "") == {0.3}
    layerwise = yaml_merge(pair, tmp_path / "i", "imm_layerwise", own={"weight": 0.5, "density": 1.0},
                           parameters={"importance": [1.0, 0.0], "direction": "protect", "strength": 0.5})
    assert where(layerwise, "layers.0.") == {0.05} and where(layerwise, "layers.1.") == {0.15}
    assert where(layerwise, "embed_tokens") == {0.1}


def test_the_run_merge_block_reaches_each_operator(pair, tmp_path):
    """merge_back as the loop calls it: imm_layerwise reads θ0's importance through the loop's callable
    (here [0, 1]: block 1 critical), release s 0.5 → block 1 0.5·1.5·0.2 = 0.15, block 0 0.5·0.5·0.2 = 0.05;
    model_stock merges the iteration's two fine-tunes (F, F′) → 0.3."""
    asked = []
    block = MergeConfig(method="imm_layerwise", density=1.0, parameters={"direction": "release"})
    merge_back(pair / "base", pair / "shifted", tmp_path / "lw", block, seed=1,
               importance=lambda kind: asked.append(kind) or [0.0, 1.0])
    found = updates(pair, tmp_path / "lw")
    assert asked == ["influence"] and where(found, "layers.1.") == {0.15} and where(found, "layers.0.") == {0.05}
    merge_back(pair / "base", [pair / "shifted", pair / "shifted_twice"], tmp_path / "ms", MergeConfig(method="model_stock"), seed=1)
    assert where(updates(pair, tmp_path / "ms"), "") == {0.3}


def test_model_stock_at_t2_of_a_toy_loop_measures_from_g_and_records_each_t(tmp_path):
    """A toy iteration t = 2: θ0 (a 2-block Llama, hidden 64), G = θ_1 = θ0 + 0.2 on every entry, and two fine-tunes of
    G with independent noise, F = G + ε and F′ = G + ε′, ε, ε′ ~ N(0, 0.1²) per entry. About θ0 the two updates share
    0.2 per entry: cos ≈ 0.2²/(0.2² + 0.1²) = 0.8 and t ≈ 1.6/1.8 = 0.889 on every tensor (the earlier definition, what
    merging without the start measures). About G only ε and ε′ remain: cos ≈ 0 within about 1/√N (N ≥ 64 entries a
    tensor), so t is near 0 (0 where cos < 0): median below 0.1. A tensor with t = 0 is G itself."""
    model = tiny_llama(64, hidden=64, heads=2, seed=0)  # then the noise draws, from the same seeded stream
    model.save_pretrained(tmp_path / "theta0")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    for name, noise in (("G", 0.0), ("F", 0.1), ("F2", 0.1)):
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(base[k] + 0.2 + noise * torch.randn_like(p))
        model.save_pretrained(tmp_path / name)
    fine_tunes, block = [tmp_path / "F", tmp_path / "F2"], MergeConfig(method="model_stock")
    merge_back(tmp_path / "theta0", fine_tunes, tmp_path / "about_theta0", block, seed=1)
    said = merge_back(tmp_path / "theta0", fine_tunes, tmp_path / "about_g", block, seed=1, start=tmp_path / "G")
    before, after = (json.loads((tmp_path / d / "merge_record.json").read_text()) for d in ("about_theta0", "about_g"))
    assert before["summary"]["t"]["min"] > 0.85 and before["summary"]["t"]["max"] < 0.93
    assert after["summary"]["t"]["median"] < 0.1 and len(after["tensors"]) == len(base)
    assert said.startswith("model_stock; t per tensor 0.000 to ")
    g, merged = load_file(tmp_path / "G" / "model.safetensors"), load_file(tmp_path / "about_g" / "model.safetensors")
    flat = [k for k, r in after["tensors"].items() if r["t"] == 0]
    assert flat and all(torch.allclose(merged[k], g[k], atol=1e-6) for k in flat)


@pytest.mark.parametrize("raw, message", [
    ({"merge_method": "imm_layerwise", "parameters": {"importance": [1.0, 2.0, 3.0]}}, "has 3 value.s. but the checkpoint has 2"),
    ({"merge_method": "imm_layerwise", "parameters": {"importance": [1.0, 2.0], "direction": "sideways"}}, "must be one of protect, release"),
    ({"merge_method": "imm_layerwise", "parameters": {"importance": "influence"}}, "list of finite numbers"),
    ({"merge_method": "imm_layerwise"}, "needs parameter 'importance'"),
    ({"merge_method": "model_stock"}, "model_stock"),
    ({"merge_method": "wise_ft", "start_model": "."}, "start_model is read only by model_stock, model_stock_theta0"),
    ({"merge_method": "wise_ft", "parameters": {"weight": 1.5}}, "out of range"),
])
def test_bad_operator_settings_fail_in_one_line(pair, tmp_path, raw, message):
    raw = {"base_model": str(pair / "base"), "models": [{"model": str(pair / "shifted")}], **raw}
    with pytest.raises(UserError, match=message):
        merge(MergeSpec.from_dict(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [
    ("merge.method=imm_layerwise|merge.parameters={importance: curvature}", "must be one of ablation, gradient, influence"),
    ("merge.method=imm_layerwise|merge.parameters={direction: up}", "must be one of protect, release"),
    ("merge.method=lines|merge.parameters={gamma: 0.1}", "unknown parameter 'gamma'"),
    ("merge_arms={imm: {method: wise_ft}}", "imm is a built-in arm"),
    ("merge_arms={mine: {method: nope}}", "merge_arms.mine"),
    ("arms=[self_improve,mine]", "unknown arm 'mine'"),
])
def test_bad_run_blocks_fail_when_the_config_loads(override, message):
    with pytest.raises(UserError, match=message):
        load_config("smoke", tuple(override.split("|")))


def test_a_merging_arm_of_the_run_gets_its_own_block():
    cfg = load_config("smoke", ("arms=[self_improve,imm,mine]", "merge_arms={mine: {method: lines, parameters: {alpha: 0.1}}}"))
    assert cfg.arm("mine").merges and cfg.merge_block("mine").method == "lines" and cfg.merge_block("imm").method == "imm"
    assert merge_back_spec("a", "b", cfg.merge_block("mine"), folders_exist=False).parameters == {"alpha": 0.1}
