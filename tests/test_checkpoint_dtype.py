"""F_t and θ_t are saved in θ0's own dtype (model.checkpoint_dtype: base), float32 only where asked: a bfloat16
θ0 of 1.5B parameters makes 3 GB checkpoints, not 6 GB."""

from pathlib import Path

import pytest
import torch
from tiny import tiny_llama

from imm.config import FinetuneConfig, MergeConfig, load_config
from imm.errors import UserError
from imm.finetune_launch import finetune_checkpoint
from imm.merging.merge_back import merge_back
from imm.models import checkpoint_dtype, load_tokenizer, save_model
from imm.tensor_files import tensor_table
from imm.verify.training_set import Example


def tiny(tmp_path, dtype) -> Path:
    tok = load_tokenizer("builtin")
    model = tiny_llama(tokenizer=tok, hidden=16, heads=2).to(dtype)
    return save_model(model, tok, tmp_path / f"theta0-{dtype}".replace("torch.", ""))


def stored(folder) -> set[str]:
    return {entry.dtype for entry in tensor_table(folder).values()}


EXAMPLES = [Example("a", "Question: 2 + 3 = ?\nAnswer:", " 2 + 3 = 5. The answer is 5."),
            Example("b", "Question: 4 + 1 = ?\nAnswer:", " 4 + 1 = 5. The answer is 5.")]


def test_base_means_the_dtype_of_theta0s_weights(tmp_path):
    bf16, fp32 = tiny(tmp_path, torch.bfloat16), tiny(tmp_path, torch.float32)
    assert (checkpoint_dtype("base", bf16), checkpoint_dtype("base", fp32)) == ("bfloat16", "float32")
    assert checkpoint_dtype("float32", bf16) == "float32"
    with pytest.raises(UserError, match="model.checkpoint_dtype must be one of base"):
        checkpoint_dtype("fp8", tmp_path)


@pytest.mark.parametrize("asked, written", [("base", "BF16"), ("float32", "F32")])
def test_f_t_and_theta_t_of_a_bfloat16_base_are_written_as_asked(tmp_path, asked, written):
    """Training runs in float32 (a float32 copy of init); only the saved F_t and the merged θ_t take the dtype."""
    base = tiny(tmp_path, torch.bfloat16)
    dtype = checkpoint_dtype(asked, base)
    cfg = FinetuneConfig(epochs=1, batch_size=2, learning_rate=1e-2)
    finetune_checkpoint(base, EXAMPLES, cfg, tmp_path / "F1", tmp_path / "stats.json", seed=0, device="cpu",
                        dtype=dtype)
    merge_back(base, tmp_path / "F1", tmp_path / "theta1", MergeConfig(), seed=0, out_dtype=dtype)
    assert stored(tmp_path / "F1") == stored(tmp_path / "theta1") == {written}
    finetune_checkpoint(base, [], cfg, tmp_path / "F1-empty", tmp_path / "stats-empty.json", seed=0, device="cpu",
                        dtype=dtype)  # no verified sample: F_t is a copy of init, in the same dtype
    assert stored(tmp_path / "F1-empty") == {written}


def test_the_run_config_refuses_an_unknown_checkpoint_dtype():
    with pytest.raises(UserError, match="config key model.checkpoint_dtype must be one of base, float32, bfloat16, "
                                        "float16, got 'half'"):
        load_config("smoke", ("model.checkpoint_dtype=half",))
