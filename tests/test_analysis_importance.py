"""Layer importance on tiny models: block skipping under a KV cache, ablation drops, gradient norms, cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from imm.analysis import importance as imp
from imm.analysis.importance_cache import cached_importance
from imm.config import load_config
from imm.finetune import collate, encode_example, sum_loss
from imm.engines.hf import generate
from imm.tasks.base import Task
from imm.tasks.registry import get_task
from imm.verify import Verdict
from imm.world.tokenizer import train_tokenizer

from tiny import tiny_llama

NEW_TOKENS = 6


class EchoTask(Task):
    """Correct = exactly the text stored as the answer (here: the unablated model's own greedy output)."""

    name = "echo"

    def prompt(self, problem, shots=(), cue=""):
        return problem.question

    def check(self, completion, problem, metric="strict-match"):
        return Verdict(extracted=completion, correct=completion == problem.answer)


@pytest.fixture(scope="module")
def world():
    """A BPE tokenizer trained on arith text and 8 arith problems with their solutions."""
    task = get_task("arith")
    problems = task.problems("test")[:8]
    tokenizer = train_tokenizer([task.prompt(p) + " " + p.solution for p in task.problems("test")[:200]], 300)
    return task, problems, tokenizer


def tiny_lm(tokenizer, identity_block: int | None = None) -> LlamaForCausalLM:
    """3 blocks with large random weights (std 0.5, so every block matters); `identity_block` gets zero o_proj
    and down_proj, so its attention and MLP add exactly 0 to the residual stream: it is the identity."""
    model = tiny_llama(tokenizer=tokenizer, layers=3, initializer_range=0.5, bos_token_id=None).eval()
    if identity_block is not None:
        block = model.model.layers[identity_block]
        with torch.no_grad():
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    return model


def echo_probe(model, tokenizer, problems) -> imp.Probe:
    questions = [p.question for p in problems]
    outputs = generate(model, tokenizer, questions, max_new_tokens=NEW_TOKENS, stop=())
    echo = [dataclasses.replace(p, answer=out[0].text) for p, out in zip(problems, outputs)]
    return imp.Probe(EchoTask(), tuple(echo))


def test_skipping_block_zero_under_kv_cache_matches_a_cacheless_forward(world):
    """Greedy generation with a KV cache while block 0 is skipped equals step-by-step argmax without a cache
    (the case that breaks when block 0 is removed from the ModuleList: the cache length is read from slot 0).
    And skipping changes the output, so the comparison is not between two unablated runs."""
    _, problems, tokenizer = world
    model = tiny_lm(tokenizer)
    ids = tokenizer(problems[0].question, return_tensors="pt", add_special_tokens=False)["input_ids"]  # (1, T)
    full = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
    with imp.skipped_block(model, 0):
        cached = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
        manual = ids
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                next_id = model(manual, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                manual = torch.cat([manual, next_id], dim=1)
    assert torch.equal(cached, manual)
    assert not torch.equal(cached, full)
    assert not model.model.layers[0]._forward_hooks  # the hook is gone after the block


def test_identity_block_has_zero_ablation_importance(world):
    """The probe's gold answers are the unablated model's greedy outputs, so its accuracy is 1 by construction.
    Skipping the identity block 1 changes nothing: drop exactly 0. Skipping a random block changes outputs."""
    _, problems, tokenizer = world
    model = tiny_lm(tokenizer, identity_block=1)
    probe = echo_probe(model, tokenizer, problems)
    result = imp.ablation_importance(model, tokenizer, probe, max_new_tokens=NEW_TOKENS)
    assert result.accuracy == 1.0
    assert result.values[1] == 0.0 and result.skipped_accuracy[1] == 1.0
    assert result.values[0] > 0 and result.values[2] > 0


def test_gradient_importance_is_the_norm_of_the_mean_loss_gradient(world):
    """Accumulating summed losses over batches of 3 and dividing by all response tokens once must give the
    gradient of the mean response-token loss over the whole probe, computed here in one batch."""
    task, problems, tokenizer = world
    model = tiny_lm(tokenizer)
    probe = imp.Probe(task, tuple(problems))
    result = imp.gradient_importance(model, tokenizer, probe, batch_size=3)
    examples = [encode_example(tokenizer, task.prompt(p), " " + p.solution, 512) for p in problems]
    loss, count = sum_loss(model, collate(examples, tokenizer.pad_token_id))
    (loss / count).backward()
    for layer, block in enumerate(model.model.layers):
        expected = torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item()
        assert result.values[layer] == pytest.approx(expected, rel=1e-4)
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_cosine_sum_counts_real_tokens_only():
    """Rows (one sequence, 3 tokens, hidden 2): x_in = [1, 0], [0, 1], [9, 9]; x_out = [1, 0], [1, 1], [−5, 3];
    cosines 1, 1/√2 and (padding, masked) 0.267...: Σ over real tokens = 1 + 1/√2 ≈ 1.70711."""
    x_in = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    x_out = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-5.0, 3.0]]])
    assert imp.cosine_sum(x_in, x_out, torch.tensor([[1, 1, 0]])) == pytest.approx(1 + 2 ** -0.5)


def test_block_influence_is_zero_for_an_identity_block_and_blind_to_padding(world):
    """An identity block returns its input: cos = 1 on every token, influence 1 − 1 = 0; the random blocks move
    their input (influence > 0.01). Batches of 1 (no padding) and of 8 (right padding) give the same values, since
    padded rows are masked out of the mean."""
    task, problems, tokenizer = world
    model = tiny_lm(tokenizer, identity_block=1)
    probe = imp.Probe(task, tuple(problems))
    alone = imp.influence_importance(model, tokenizer, probe, batch_size=1)
    padded = imp.influence_importance(model, tokenizer, probe, batch_size=8)
    assert alone.values[1] == pytest.approx(0, abs=1e-6) and min(alone.values[0], alone.values[2]) > 0.01
    assert [padded.values[i] for i in range(3)] == pytest.approx([alone.values[i] for i in range(3)], abs=1e-5)


def test_the_probe_never_sees_a_scored_or_sampled_problem():
    """The default run scores the test splits of six families and samples arith's first 1000 training
    problems; its probe (arith's last 64 training problems) shares no question with any of them. A run that
    samples into the probe (4,000 training problems: 3,937 + 64 is one too many) is told how many it shares."""
    cfg = load_config("default")
    probe = imp.probe_set(cfg.analysis.probe_task, cfg.analysis.probe_size)
    asked = {p.question for p in probe.problems}
    assert len(asked) == cfg.analysis.probe_size
    for name in (*cfg.data.id_tasks, *cfg.data.ood_tasks):
        assert not asked & {p.question for p in get_task(name).problems("test")}, name
    sampled = get_task(cfg.data.train_task).problems("train")[:cfg.data.train_questions]
    assert not asked & {p.question for p in sampled}
    assert imp.probe_overlap("arith", 64, "arith", 4000 - 64) == 0  # fits exactly
    assert imp.probe_overlap("arith", 64, "arith", 4000 - 63) == 1
    assert imp.probe_overlap("arith", 64, "arith_vocab", 4000) == 0  # another task's training split


def test_probe_set_takes_verified_training_problems_and_rejects_bad_input():
    probe = imp.probe_set("arith", 5)
    assert len(probe.problems) == 5 and all(p.solution.endswith(f"The answer is {p.answer}.") for p in probe.problems)
    with pytest.raises(imp.UserError, match="probe size"):
        imp.probe_set("arith", 0)
    with pytest.raises(imp.UserError, match="unknown task"):
        imp.probe_set("no_such_task", 4)
    with pytest.raises(imp.UserError, match="unknown importance"):
        imp.check_kinds(["ablation", "saliency"])


def test_importance_is_cached_per_checkpoint_and_kind(world, tmp_path, monkeypatch):
    """Second ask: no model load. Adding `gradient` later measures only gradient. Re-saving the checkpoint
    (new mtime) invalidates its cache."""
    _, _, tokenizer = world
    folder = tmp_path / "base"
    tiny_lm(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    measured: list[list[str]] = []
    real_measure = imp.measure
    monkeypatch.setattr("imm.analysis.importance_cache.measure",
                        lambda m, t, p, kinds, **kw: measured.append(list(kinds)) or real_measure(m, t, p, kinds, **kw))
    ask = dict(probe_task="arith", probe_size=2, max_new_tokens=4, device="cpu")
    first = cached_importance(folder, ("ablation",), tmp_path / "cache", **ask)
    again = cached_importance(folder, ("ablation",), tmp_path / "cache", **ask)
    both = cached_importance(folder, ("ablation", "gradient"), tmp_path / "cache", **ask)
    assert measured == [["ablation"], ["gradient"]]
    assert first == again and both["ablation"] == first["ablation"] and sorted(both["gradient"].values) == [0, 1, 2]
    tiny_lm(tokenizer).save_pretrained(folder)
    cached_importance(folder, ("ablation",), tmp_path / "cache", **ask)
    assert measured[-1] == ["ablation"] and len(measured) == 3
