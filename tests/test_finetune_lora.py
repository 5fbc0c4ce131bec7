"""LoRA fine-tuning: the adapter folded into F_t makes the task vector F_t − θ0 exactly the LoRA update.

Hu et al. (arXiv 2106.09685): an adapted linear layer computes W·x + (alpha/r)·B·A·x; folding writes
W ← W + (alpha/r)·B·A. So, on a tiny Llama built here, F_t − θ0 must equal (alpha/r)·B·A on each
targeted projection and be exactly zero on every other tensor (embeddings, norms, untargeted layers).
"""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from imm.models import save_model
from imm.cli import main
from imm.preflight import load_config
from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune import add_lora, fold_lora, train
from imm.finetune_launch import finetune_checkpoint
from imm.verify.training_set import Example
from imm.world.tokenizer import train_tokenizer

from tiny import tiny_llama

PAIRS = [("Question: 2 + 3 = ?\nAnswer:", " 2 + 3 = 5. The answer is 5.")] * 8
# rank 4, alpha 8: scale 2; only the attention's q and v projections are adapted
LORA = FinetuneConfig(method="lora", lora_rank=4, lora_alpha=8.0, lora_dropout=0.0, lora_targets=("q_proj", "v_proj"),
                      learning_rate=1e-2, epochs=2, batch_size=4, warmup_ratio=0.0)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([q + a for q, a in PAIRS] * 4, vocab_size=300)


def tiny_model(vocab: int) -> LlamaForCausalLM:
    return tiny_llama(vocab, max_position_embeddings=128)


def is_targeted(name: str) -> bool:
    return name.endswith(("q_proj.weight", "v_proj.weight"))


def test_folded_update_is_scaled_b_times_a_on_targets_and_zero_elsewhere(tok):
    theta0 = {k: v.clone() for k, v in tiny_model(len(tok)).state_dict().items()}
    model = add_lora(tiny_model(len(tok)), LORA)
    train(model, tok, PAIRS, LORA, seed=0, desc=None)
    factors = {name.removeprefix("base_model.model.") + ".weight": (module.lora_A["default"].weight.detach().clone(), module.lora_B["default"].weight.detach().clone())
               for name, module in model.named_modules() if hasattr(module, "lora_A")}
    folded = fold_lora(model).state_dict()
    assert set(folded) == set(theta0), "the folded model has exactly the base model's tensors"
    assert len(factors) == 4  # q_proj and v_proj in each of 2 layers
    for name, delta in ((k, folded[k] - theta0[k]) for k in theta0):
        if not is_targeted(name):
            assert torch.equal(delta, torch.zeros_like(delta)), f"{name} moved but is not a LoRA target"
            continue
        a, b = factors[name]
        assert a.shape == (4, 32) and b.shape == (32, 4)  # A: (r, in), B: (out, r)
        assert delta.abs().max() > 1e-4, f"{name} did not learn"
        torch.testing.assert_close(delta, 2.0 * b @ a, rtol=0, atol=1e-6)


def test_finetune_checkpoint_with_lora_writes_a_plain_checkpoint_that_differs_only_on_targets(tok, tmp_path):
    save_model(tiny_model(len(tok)), tok, tmp_path / "theta0")
    examples = [Example(id=str(i), prompt=q, response=a) for i, (q, a) in enumerate(PAIRS)]
    finetune_checkpoint(tmp_path / "theta0", examples, LORA, tmp_path / "F1", tmp_path / "stats.json", seed=0, device="cpu")
    before, after = load_file(tmp_path / "theta0" / "model.safetensors"), load_file(tmp_path / "F1" / "model.safetensors")
    assert set(after) == set(before), "F_t is saved without adapter tensors"
    assert not any("lora" in name for name in after)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved == {name for name in before if is_targeted(name)}
    assert not (tmp_path / "F1" / "adapter_config.json").exists()
    assert json.loads((tmp_path / "stats.json").read_text())["steps"] == 4  # 8 examples / batch 4 × 2 epochs


def test_lora_targets_absent_from_the_model_are_one_user_error(tok):
    with pytest.raises(UserError, match="finetune.lora_targets"):
        add_lora(tiny_model(len(tok)), FinetuneConfig(method="lora", lora_targets=("c_attn",)))


@pytest.mark.parametrize("override, message", [
    ("finetune.method=qlora", "finetune.method must be one of full, lora"),
    ("finetune.lora_rank=0", r"finetune.lora_rank must be in \[1, 65536\], got 0"),
    ("finetune.lora_alpha=-1", r"finetune.lora_alpha must be in \(0, 1000000\], got -1.0"),
    ("finetune.lora_dropout=1.0", "finetune.lora_dropout must be in"),
    ("finetune.lora_targets=[]", "finetune.lora_targets must name"),
    ("finetune.bf16_autocast=always", "finetune.bf16_autocast must be auto, true or false"),
])
def test_bad_lora_fields_are_refused_at_load(override, message):
    with pytest.raises(UserError, match=message):
        load_config("smoke", (override,))


def test_a_bad_lora_field_is_one_line_and_exit_2_before_any_work(tmp_path, capsys):
    assert main(["run", "--config", "smoke", f"out_dir={tmp_path}", "finetune.method=qlora"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "finetune.method" in err
    assert not (tmp_path / "smoke").exists()
