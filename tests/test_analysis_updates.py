"""Update magnitudes and superficiality figures on tiny checkpoints whose answers are known by construction."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaForCausalLM

from imm.analysis import superficiality as sf
from imm.analysis.updates import ALL, layer_rows, stream_stats
from imm.analysis.weights import Weights, locate
from imm.errors import UserError

from tiny import tiny_llama

Q_PROJ = "model.layers.1.self_attn.q_proj.weight"  # (32, 32)
NORM = "model.layers.1.input_layernorm.weight"  # (32,), initialised to 1.0


def tiny_model(tie: bool = False, layers: int = 2, hidden: int = 32) -> LlamaForCausalLM:
    """A tiny Llama whose weights are multiples of 2^-10, so adding 1/8 or 1/2 is exact in float32."""
    return tiny_llama(hidden=hidden, intermediate=64, layers=layers, grid=2**-10, tie_word_embeddings=tie)


def perturbed(model: LlamaForCausalLM, edits: dict[str, float]) -> LlamaForCausalLM:
    """A copy of `model` with `value` added to every element of each named tensor."""
    copy = LlamaForCausalLM(model.config)
    copy.load_state_dict(model.state_dict())
    params = dict(copy.named_parameters())
    with torch.no_grad():
        for name, value in edits.items():
            params[name].add_(value)
    return copy


def pair_rows(base, model):
    """layers.csv rows of checkpoint `model` against `base`, as `imm analyze --base --model` computes them."""
    names, groups = stream_stats(base, {"model": model})
    return layer_rows(names, groups, "model")


def row(rows, layer, module=ALL, model="model"):
    return next(r for r in rows if r.layer == layer and r.module == module and r.model == model)


def test_locate_names_blocks_modules_embed_and_head():
    assert locate("model.layers.12.self_attn.q_proj.weight") == ("12", "self_attn.q_proj")
    assert locate("model.layers.0.self_attn.q_proj.bias") == ("0", "self_attn.q_proj")
    assert locate("model.layers.3.input_layernorm.weight") == ("3", "input_layernorm")
    assert locate("model.embed_tokens.weight") == ("embed", "embed_tokens")
    assert locate("lm_head.weight") == ("head", "lm_head")
    assert locate("model.norm.weight") == ("head", "norm")


def test_one_perturbed_block_reports_exactly_its_delta(tmp_path):
    """q_proj of block 1 += 1/8 on 32x32 entries: ‖Δ‖ = sqrt(1024)/8 = 4. Its input norm (all 1.0) += 1/2 on
    32 entries: ‖Δ‖ = sqrt(32/4) = sqrt(8), ‖θ0‖ = sqrt(32), relative = 1/2. Block 1: sqrt(16 + 8) = sqrt(24).
    Block 0, embed and head did not move: 0."""
    base = tiny_model()
    base.save_pretrained(tmp_path / "a", max_shard_size="10KB")  # sharded: 12 files + index
    perturbed(base, {Q_PROJ: 1 / 8, NORM: 1 / 2}).save_pretrained(tmp_path / "b")
    rows = pair_rows(tmp_path / "a", tmp_path / "b")
    assert row(rows, "1", "self_attn.q_proj").delta_l2 == 4.0
    assert row(rows, "1", "input_layernorm").delta_l2 == pytest.approx(math.sqrt(8), abs=1e-12)
    assert row(rows, "1", "input_layernorm").relative == pytest.approx(0.5, abs=1e-12)
    assert row(rows, "1").delta_l2 == pytest.approx(math.sqrt(24), abs=1e-12)
    assert row(rows, "1").n_params == 4 * 32 * 32 + 3 * 32 * 64 + 2 * 32
    for layer in ("0", "embed", "head"):
        assert row(rows, layer).delta_l2 == 0.0
    assert [r.layer for r in rows if r.module == ALL] == ["embed", "0", "1", "head"]


def test_tied_embeddings_with_an_untied_model(tmp_path):
    """Base ties its head to the embedding (no lm_head.weight on disk); the model stores an lm_head equal to
    embedding + 1/4 on 64x32 entries, so its head moved by sqrt(2048)/4 = sqrt(128) against the tied base."""
    base = tiny_model(tie=True)
    base.save_pretrained(tmp_path / "a")
    assert Weights(tmp_path / "a").resolve("lm_head.weight") == "model.embed_tokens.weight"
    untied = tiny_model(tie=False)
    with torch.no_grad():
        untied.load_state_dict(base.state_dict(), strict=False)
        untied.lm_head.weight.copy_(base.model.embed_tokens.weight + 1 / 4)
    untied.save_pretrained(tmp_path / "b")
    rows = pair_rows(tmp_path / "a", tmp_path / "b")
    assert row(rows, "head", "lm_head").delta_l2 == pytest.approx(math.sqrt(128), abs=1e-12)
    assert row(rows, "embed").delta_l2 == 0.0
    tied_rows = pair_rows(tmp_path / "a", tmp_path / "a")
    assert [r.module for r in tied_rows if r.layer == "head"] == [ALL, "norm"]  # no head matrix of its own


def test_merge_pullback_step_and_cosine(tmp_path):
    """Task vector Δ = 1/8 on block 1's q_proj (‖Δ‖ = 4). Previous θ_{t-1} = θ0 + Δ, fine-tune F = θ0 + Δ,
    merged θ = θ0 + Δ/2 (exact halves of multiples of 2^-10). Merged row: delta 2, step ‖Δ/2 − Δ‖ = 2,
    cos(Δ/2, Δ) = 1, pullback 1 − ⟨Δ/2, Δ⟩/‖Δ‖² = 1/2. Fine-tuned row: step 0, no pullback."""
    base = tiny_model()
    base.save_pretrained(tmp_path / "base")
    perturbed(base, {Q_PROJ: 1 / 8}).save_pretrained(tmp_path / "prev")
    perturbed(base, {Q_PROJ: 1 / 8}).save_pretrained(tmp_path / "ft")
    perturbed(base, {Q_PROJ: 1 / 16}).save_pretrained(tmp_path / "merged")
    paths = {name: tmp_path / name for name in ("ft", "merged", "prev")}
    names, groups = stream_stats(tmp_path / "base", paths)
    merged = layer_rows(names, groups, "merged", previous="prev", finetuned="ft")
    m = row(merged, "1", "self_attn.q_proj", model="merged")
    assert (m.delta_l2, m.step_l2, m.cos_prev, m.pullback) == (2.0, 2.0, 1.0, 0.5)
    f = row(layer_rows(names, groups, "ft", previous="prev"), "1", model="ft")
    assert (f.delta_l2, f.step_l2, f.pullback) == (4.0, 0.0, None)
    assert row(merged, "0", model="merged").cos_prev is None  # block 0 never moved: cosine undefined


def test_incompatible_checkpoints_fail_before_reading(tmp_path):
    tiny_model(layers=2).save_pretrained(tmp_path / "a")
    tiny_model(layers=3).save_pretrained(tmp_path / "b")
    tiny_model(hidden=16).save_pretrained(tmp_path / "c")
    with pytest.raises(UserError, match="missing from"):
        pair_rows(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UserError, match="shapes"):
        pair_rows(tmp_path / "a", tmp_path / "c")
    with pytest.raises(UserError, match="does not exist"):
        pair_rows(tmp_path / "a", tmp_path / "nowhere")


def test_chunked_reading_matches_whole_tensor(tmp_path, monkeypatch):
    """Reading 100 elements at a time (3 rows of 32 per read) yields the same statistics as one read."""
    base = tiny_model()
    base.save_pretrained(tmp_path / "a")
    perturbed(base, {Q_PROJ: 1 / 8}).save_pretrained(tmp_path / "b")
    whole = pair_rows(tmp_path / "a", tmp_path / "b")
    monkeypatch.setattr("imm.analysis.weights.CHUNK_ELEMENTS", 100)
    assert pair_rows(tmp_path / "a", tmp_path / "b") == whole


# --- superficiality figures on hand-made vectors ---


def test_ranks_and_spearman_pinned():
    """Ranks of [1,2,2,3] are [1,2.5,2.5,4]. Spearman of [1..5] with [2,1,4,3,5]: Σd² = 4, ρ = 1 − 6·4/(5·24) = 0.8.
    With ties, x=[1,2,2,3], y=[1,2,3,4]: rank deviations [-1.5,0,0,1.5] and [-1.5,-.5,.5,1.5] give
    cov 4.5, var 4.5 and 5, ρ = 4.5/sqrt(22.5) = 0.948683..."""
    assert sf.ranks([1, 2, 2, 3]) == [1, 2.5, 2.5, 4]
    assert sf.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert sf.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert sf.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert sf.spearman([1, 1, 1], [1, 2, 3]) is None
    assert sf.spearman([1], [2]) is None


def test_critical_layers_and_share():
    """8 blocks -> the top quarter is 2 blocks: block 6 (0.9), then blocks 2 and 5 tie at 0.5 and the lower
    index wins -> [2, 6]. Updates U = 1 on blocks 2 and 6, 2 elsewhere: share = (1+1)/(1+1+6·4) = 2/26."""
    importance = {0: 0.1, 1: 0.0, 2: 0.5, 3: 0.2, 4: 0.0, 5: 0.5, 6: 0.9, 7: 0.3}
    assert sf.critical_layers(importance) == [2, 6]
    assert sf.critical_layers({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}) == [3, 4]  # ceil(5/4) = 2
    updates = {layer: (1.0 if layer in (2, 6) else 2.0) for layer in importance}
    assert sf.critical_share(updates, [2, 6]) == pytest.approx(2 / 26)
    assert sf.critical_share({0: 0.0, 1: 0.0}, [0]) is None


def test_superficiality_record():
    """Importance rises with the block index, the update falls: ρ = −1; the top quarter of 4 is block 3,
    U = [4,3,2,1] -> share 1/30; equal block sizes -> uniform share 1/4."""
    imp = {0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3}
    upd = {0: 4.0, 1: 3.0, 2: 2.0, 3: 1.0}
    rel = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    s = sf.superficiality("merged", "ablation", imp, upd, rel, {layer: 10 for layer in imp})
    assert (s.spearman, s.spearman_relative, s.critical) == (pytest.approx(-1.0), pytest.approx(1.0), (3,))
    assert s.critical_share == pytest.approx(1 / 30)
    assert s.uniform_share == 0.25


def test_pullback_of_the_papers_imm_merge_is_one_half(tmp_path):
    """θ = θ0 + λ·m⊙Δ/(1−p) with λ = 0.5, keep rate 0.8 (imm merge): ⟨θ − θ0, Δ⟩/‖Δ‖² = λ/(1−p)·Σ m Δ²/ΣΔ²,
    whose expectation is λ = 0.5, so pullback ≈ 0.5 per block (thousands of entries: within ±0.05). The merged
    update's norm is λ/sqrt(1−p) = 0.559 of the fine-tune's in expectation."""
    import yaml

    from imm.cli import main

    base = tiny_model()
    base.save_pretrained(tmp_path / "base")
    torch.manual_seed(1)
    tuned = perturbed(base, {})
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    tuned.save_pretrained(tmp_path / "ft")
    spec = {"merge_method": "imm", "base_model": str(tmp_path / "base"), "dtype": "float32",
            "models": [{"model": str(tmp_path / "ft"), "parameters": {"weight": 0.5, "density": 0.8}}]}
    (tmp_path / "merge.yml").write_text(yaml.safe_dump(spec))
    assert main(["merge", str(tmp_path / "merge.yml"), str(tmp_path / "merged"), "--quiet"]) == 0
    names, groups = stream_stats(tmp_path / "base", {"ft": tmp_path / "ft", "merged": tmp_path / "merged"})
    merged = layer_rows(names, groups, "merged", finetuned="ft")
    tuned_rows = layer_rows(names, groups, "ft")
    for layer in ("0", "1"):
        assert row(merged, layer, model="merged").pullback == pytest.approx(0.5, abs=0.05)
        ratio = row(merged, layer, model="merged").delta_l2 / row(tuned_rows, layer, model="ft").delta_l2
        assert ratio == pytest.approx(0.5 / math.sqrt(0.8), abs=0.03)
