"""The merge driver on tiny checkpoints built in code: output folder, streaming, seeds, tied
embeddings, validation from headers before any tensor is read, and the `imm merge` command."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from imm import cli, tensor_files
from imm.errors import UserError
from imm.merging import MergeSpec, driver, merge, plan_merge, tensor_seed

from tiny import tiny_llama

SIZES = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4)


def _save(path: Path, model, tokenizer: bool = False) -> str:
    model.save_pretrained(path)
    if tokenizer:
        (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    return str(path)


def _finetune(base, seed: int):
    torch.manual_seed(seed)
    model = type(base)(base.config)
    with torch.no_grad():
        for p, q in zip(model.parameters(), base.parameters()):
            p.copy_(q + 0.01 * torch.randn_like(q))
    return model


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    base = tiny_llama()
    return {"root": root, "base": _save(root / "base", base, tokenizer=True),
            "ft": _save(root / "ft", _finetune(base, 1)), "ft2": _save(root / "ft2", _finetune(base, 2))}


def _tensors(folder) -> dict:
    return {k: v for f in sorted(Path(folder).glob("*.safetensors")) for k, v in load_file(f).items()}


def _imm_spec(family, **extra) -> MergeSpec:
    config = {"merge_method": "imm", "base_model": family["base"],
              "models": [{"model": family["ft"], "parameters": {"weight": 0.5, "density": 0.8}}], "dtype": "float32"}
    return MergeSpec.from_dict(config | extra)


def test_imm_merge_writes_a_loadable_sharded_checkpoint(llama, tmp_path):
    """Every merged entry is θ0 or θ0 + 0.5·(F − θ0)/0.8; about 80% take the second form."""
    out = merge(_imm_spec(llama), tmp_path / "out", seed=1234, max_shard_bytes=20_000)
    names = sorted(p.name for p in out.iterdir())
    assert {"config.json", "merge_config.yml", "tokenizer_config.json", "generation_config.json",
            "model.safetensors.index.json"} <= set(names)
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(_tensors(out))
    assert yaml.safe_load((out / "merge_config.yml").read_text())["merge_method"] == "imm"
    assert "--seed 1234" in (out / "merge_config.yml").read_text()
    base, ft, merged = _tensors(llama["base"]), _tensors(llama["ft"]), _tensors(out)
    kept = total = 0
    for name, theta in merged.items():
        update = 0.5 * (ft[name] - base[name]) / 0.8
        is_kept = (theta - (base[name] + update)).abs() < 1e-6
        assert torch.all(is_kept | ((theta - base[name]).abs() == 0))
        kept, total = kept + int(is_kept.sum()), total + theta.numel()
    assert abs(kept / total - 0.8) < 0.02
    AutoModelForCausalLM.from_pretrained(out)


def test_seed_reproducible_and_tensor_order_independent(llama, tmp_path):
    spec = _imm_spec(llama)
    a = _tensors(merge(spec, tmp_path / "a", seed=7))
    b = _tensors(merge(spec, tmp_path / "b", seed=7))
    c = _tensors(merge(spec, tmp_path / "c", seed=8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    plan = plan_merge(spec)
    backwards = {job.output.name: torch.cat([p.reshape(-1) for p in driver.merge_tensor(plan, job, 7)])
                 for job in reversed(plan.jobs)}
    assert all(torch.equal(a[k].reshape(-1), backwards[k]) for k in a)


def test_streamed_pieces_equal_one_whole_piece(llama, tmp_path, monkeypatch):
    """Elementwise methods are streamed; a tiny piece size must not change a single bit."""
    spec = _imm_spec(llama)
    whole = _tensors(merge(spec, tmp_path / "whole", seed=3))
    monkeypatch.setattr(driver, "STREAM_CHUNK", 100)
    pieces = _tensors(merge(spec, tmp_path / "pieces", seed=3))
    assert all(torch.equal(whole[k], pieces[k]) for k in whole)


def test_tensor_seed_is_a_stable_hash():
    """First 8 bytes (little-endian) of sha256(b"1234\\x00model.norm.weight\\x001"), top bit cleared."""
    import hashlib

    digest = hashlib.sha256(b"1234\x00model.norm.weight\x001").digest()
    assert tensor_seed(1234, "model.norm.weight", 1) == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    assert tensor_seed(1234, "model.norm.weight", 1) != tensor_seed(1234, "model.norm.weight", 0)
    assert tensor_seed(1234, "model.norm.weight") != tensor_seed(1235, "model.norm.weight")


def test_tied_embeddings_are_merged_once_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    base = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **SIZES))
    family = {"base": _save(tmp_path / "base", base), "ft": _save(tmp_path / "ft", _finetune(base, 1))}
    spec = MergeSpec.from_dict({"merge_method": "task_arithmetic", "base_model": family["base"],
                                "models": [{"model": family["ft"], "parameters": {"weight": 0.5}}]})
    out = merge(spec, tmp_path / "out")
    assert "lm_head.weight" not in _tensors(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    expected = 0.5 * (base.model.embed_tokens.weight + _finetune(base, 1).model.embed_tokens.weight)
    assert torch.allclose(model.model.embed_tokens.weight, expected, atol=1e-6)


def test_output_dtype_and_config(llama, tmp_path):
    out = merge(_imm_spec(llama, dtype="bfloat16"), tmp_path / "out")
    assert {t.dtype for t in _tensors(out).values()} == {torch.bfloat16}
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_linear_without_base_averages_models(llama, tmp_path):
    """Weights 1 and 3: (1·F1 + 3·F2)/4."""
    spec = MergeSpec.from_dict({"merge_method": "linear", "models": [
        {"model": llama["ft"], "parameters": {"weight": 1.0}}, {"model": llama["ft2"], "parameters": {"weight": 3.0}}]})
    merged, f1, f2 = _tensors(merge(spec, tmp_path / "out")), _tensors(llama["ft"]), _tensors(llama["ft2"])
    assert all(torch.allclose(merged[k], (f1[k] + 3 * f2[k]) / 4, atol=1e-6) for k in merged)


def _variant(tmp_path, name, model_cls=LlamaForCausalLM, config_cls=LlamaConfig, **changes) -> str:
    torch.manual_seed(3)
    return _save(tmp_path / name, model_cls(config_cls(**(SIZES | changes))))


@pytest.mark.parametrize("cls, changes, expected", [
    ((Qwen2ForCausalLM, Qwen2Config), {}, "has model_type 'qwen2'"),
    ((LlamaForCausalLM, LlamaConfig), {"vocab_size": 80},
     "vocabulary size differs: {base} has 64, {other} has 80 (lm_head.weight (64, 32) vs (80, 32); "
     "model.embed_tokens.weight (64, 32) vs (80, 32)); resize both"),
    ((LlamaForCausalLM, LlamaConfig), {"num_hidden_layers": 1}, "lacks 9 tensor(s)"),
    ((LlamaForCausalLM, LlamaConfig), {"intermediate_size": 48}, "6 tensor shape(s) differ"),
])
def test_incompatible_checkpoints_fail_before_reading_tensors(llama, tmp_path, monkeypatch, cls, changes, expected):
    other = _variant(tmp_path, "other", *cls, **changes)
    spec = MergeSpec.from_dict({"merge_method": "task_arithmetic", "base_model": llama["base"],
                                "models": [{"model": other, "parameters": {"weight": 0.5}}]})

    def no_reading(self, entry, *args):
        raise AssertionError(f"read {entry.name} before validation finished")

    monkeypatch.setattr(tensor_files.TensorReader, "read", no_reading)
    with pytest.raises(UserError) as info:
        merge(spec, tmp_path / "out")
    assert expected.format(base=llama["base"], other=other) in str(info.value)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_missing_safetensors_is_a_user_error(llama, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    spec = _imm_spec(llama, models=[{"model": str(folder)}])
    with pytest.raises(UserError, match="has no \\*.safetensors files"):
        merge(spec, tmp_path / "out")


def test_failed_merge_leaves_no_output(llama, tmp_path, monkeypatch):
    calls = []

    def failing(plan, job, seed, device="cpu", reader=None, records=None):
        calls.append(job)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(plan, job, seed, device, reader, records)

    real = driver.merge_tensor
    monkeypatch.setattr(driver, "merge_tensor", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        merge(_imm_spec(llama), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cli_merges_and_reports_bad_configs_in_one_line(llama, tmp_path, capsys):
    config = {"merge_method": "ties", "base_model": llama["base"],
              "models": [{"model": llama["ft"], "parameters": {"weight": 1.0, "density": 0.5}}]}
    (tmp_path / "ok.yml").write_text(yaml.safe_dump(config))
    assert cli.main(["merge", str(tmp_path / "ok.yml"), str(tmp_path / "out"), "--seed", "3", "--quiet"]) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file()
    config["models"][0]["parameters"]["density"] = 2
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert cli.main(["merge", str(tmp_path / "bad.yml"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "density = 2 is out of range" in err
