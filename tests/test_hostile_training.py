"""Divergence is caught at every optimizer step, the last included: a non-finite gradient or weight, or a
weight norm that explodes, stops the stage with one line and saves nothing."""

from __future__ import annotations

import pytest

from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune import WEIGHT_GROWTH_LIMIT, check_step
from imm.finetune_launch import finetune_checkpoint
from imm.models import BUILTIN_DIR
from imm.verify.training_set import Example


@pytest.mark.parametrize("grad, weights, fragment", [
    (float("inf"), 10.0, "the gradient norm is inf at optimizer step 3 of 5"),
    (1.0, float("nan"), "NaN or Inf weights at optimizer step 3 of 5"),
    (1.0, 41.0, "the weight norm grew from 10 to 41 (over 4x) at optimizer step 3 of 5"),
])
def test_a_diverged_step_is_one_line(grad, weights, fragment):
    """Start norm 10: 41 > 4 x 10 has exploded, 40 has not (the limit is inclusive)."""
    assert WEIGHT_GROWTH_LIMIT == 4.0
    with pytest.raises(UserError, match=f"fine-tuning diverged: {fragment.replace('(', '.').replace(')', '.')}"):
        check_step(grad, weights, 10.0, 3, 5)
    check_step(1.0, 40.0, 10.0, 3, 5)
    check_step(None, 40.0, 10.0, 3, 5)  # DeepSpeed clips itself and reports no norm


def test_one_optimizer_step_at_lr_1e9_is_caught_and_nothing_is_saved(tmp_path):
    """8 examples, batch 8, one epoch: a single optimizer step, also the last. AdamW's first step moves
    every weight by about lr = 1e9 (m/√v = ±1), so ‖θ‖ grows by ~1e9·√N: finite, yet far past 4x."""
    examples = [Example(f"q{i}", f"Q: {i} + 1 = ?\nA:", f" {i} + 1 = {i + 1}. The answer is {i + 1}.") for i in range(8)]
    cfg = FinetuneConfig(learning_rate=1e9, epochs=1, batch_size=8, warmup_ratio=0.0)
    with pytest.raises(UserError, match=r"fine-tuning diverged: the weight norm grew from .* at optimizer step 1 of 1"):
        finetune_checkpoint(BUILTIN_DIR, examples, cfg, tmp_path / "F_1", tmp_path / "stats.json", seed=0, device="cpu")
    assert list(tmp_path.iterdir()) == []
