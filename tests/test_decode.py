"""The hf engine's own decoding loop (imm.engines.decode) returns `model.generate`'s records: with one torch
thread (as the CPU generation workers run) exactly the same tokens, counts and entropy figures, greedy and
sampled (the same random draws), with rows ending by end token, stop string or length, while rows that
ended leave the batch and the k rows of a prompt share one prompt pass; with several threads the same texts and counts, entropies within 1e-6."""

import math

import pytest
import torch

from imm.engines import decode
from imm.engines.hf import _generate_batch, effective_settings, generation_settings
from imm.models import load_model
from imm.prompts import Prompter
from imm.tasks.registry import get_task


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def builtin():
    model, tokenizer = load_model("builtin", device="cpu")
    tokenizer.padding_side = "left"
    return model, tokenizer


def _prompts(n=24):
    out = []
    for name in ("arith", "arith_long", "arith_muldiv"):
        task = get_task(name)
        out += [Prompter(task)(p) for p in task.problems("test")[:n]]
    return out


CASES = {
    "greedy": dict(k=1, temperature=0.0, top_p=1.0, max_new_tokens=96, stop=()),
    "greedy, stop strings": dict(k=1, temperature=0.0, top_p=1.0, max_new_tokens=96, stop=(".", "\n\n")),
    "greedy, length limit": dict(k=1, temperature=0.0, top_p=1.0, max_new_tokens=40, stop=()),
    "sampled": dict(k=4, temperature=0.8, top_p=1.0, max_new_tokens=96, stop=()),
    "sampled, top-p, stop strings": dict(k=3, temperature=1.0, top_p=0.9, max_new_tokens=64, stop=(" so",)),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_own_loop_records_equal_generate_records(builtin, case, one_thread):
    model, tokenizer = builtin
    options = CASES[case]
    settings = generation_settings(tokenizer, **options)
    assert decode.supports(model, effective_settings(model, settings))
    prompts = _prompts()
    theirs = _generate_batch(model, tokenizer, prompts, seed=7, own_loop=False, **options)
    ours = _generate_batch(model, tokenizer, prompts, seed=7, own_loop=True, **options)
    assert ours == theirs
    counts = [c.num_tokens for c in ours]
    assert min(counts) < max(counts)  # rows ended at different steps, so rows left the batch
    assert max(counts) == options["max_new_tokens"] or case != "greedy, length limit"
    if options["temperature"]:
        other = _generate_batch(model, tokenizer, prompts, seed=8, own_loop=True, **options)
        assert [c.text for c in other] != [c.text for c in ours]


def test_with_two_threads_texts_and_counts_are_equal_and_entropies_close(builtin):
    model, tokenizer = builtin
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for case in ("greedy", "sampled"):
            theirs, ours = (_generate_batch(model, tokenizer, _prompts(), seed=7, own_loop=own, **CASES[case])
                            for own in (False, True))
            assert [(c.text, c.num_tokens) for c in ours] == [(c.text, c.num_tokens) for c in theirs]
            assert all(math.isclose(a.mean_entropy, b.mean_entropy, rel_tol=0, abs_tol=1e-6)
                       for a, b in zip(ours, theirs))
    finally:
        torch.set_num_threads(threads)


def test_rows_leave_the_batch_and_a_shrunken_batch_keeps_min_rows(builtin):
    """The forward passes after the first answers end run on fewer rows, never fewer than MIN_ROWS."""
    model, tokenizer = builtin
    sizes = []
    hook = model.register_forward_pre_hook(lambda _, args, kw: sizes.append(kw["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        _generate_batch(model, tokenizer, _prompts(), k=1, temperature=0.0, top_p=1.0, max_new_tokens=96, stop=(),
                        seed=0)
    finally:
        hook.remove()
    assert sizes[0] == 72 and min(sizes) == decode.MIN_ROWS and sizes == sorted(sizes, reverse=True)


def test_the_k_rows_of_a_prompt_share_one_prompt_pass(builtin):
    """With k samples per prompt the prompt pass runs on each prompt once (its cache and logits are then
    repeated k times); the steps after it run on all k rows of every prompt."""
    model, tokenizer = builtin
    sizes = []
    hook = model.register_forward_pre_hook(lambda _, args, kw: sizes.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    prompts = _prompts(8)
    try:
        _generate_batch(model, tokenizer, prompts, k=4, temperature=0.8, top_p=1.0, max_new_tokens=16, stop=(),
                        seed=0)
    finally:
        hook.remove()
    assert sizes[0][0] == len(prompts) and sizes[0][1] > 1
    assert sizes[1] == (4 * len(prompts), 1)


def test_the_kv_cache_keeps_at_most_slack_positions_of_room_and_every_written_one(builtin):
    """Room of 3 positions ahead: a 5-position prompt gets room for 8; steps 6 to 8 write into it, step 9
    moves the 8 written positions into room for 12; rows leaving keep room for 3 more. The keys are always
    exactly what was written, in order."""
    model, _ = builtin
    layer = decode._cache(model).layers[0]
    assert decode.SLACK == 3
    written = torch.randn(4, 4, 12, 32)
    rooms = []
    layer.update(written[:, :, :5], written[:, :, :5] + 1)
    rooms.append(layer.room_k.shape[2])
    for end in range(6, 12):
        keys, values = layer.update(written[:, :, end - 1:end], written[:, :, end - 1:end] + 1)
        rooms.append(layer.room_k.shape[2])
        assert torch.equal(keys, written[:, :, :end]) and torch.equal(values, written[:, :, :end] + 1)
    assert rooms == [8, 8, 8, 8, 12, 12, 12]
    layer.batch_select_indices(torch.tensor([0, 2]))
    assert layer.room_k.shape == (2, 4, 14, 32) and torch.equal(layer.keys, written[[0, 2], :, :11])


def test_settings_that_add_a_logits_processor_go_through_generate(builtin):
    model, tokenizer = builtin
    settings = effective_settings(model, generation_settings(tokenizer, k=1, temperature=0.0, top_p=1.0,
                                                             max_new_tokens=8, stop=()))
    assert decode.supports(model, settings)
    for name, value in (("suppress_tokens", [5]), ("repetition_penalty", 1.2), ("min_length", 3),
                        ("bad_words_ids", [[5]]), ("eos_token_id", None)):
        assert not decode.supports(model, settings | {name: value}), name
