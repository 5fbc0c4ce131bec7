"""The SFT loop's pieces: loss mask, collation, schedule, bucketing, and that training learns."""

import math
import random

import pytest
import torch
from transformers import LlamaForCausalLM

from imm.finetune import IGNORE, FinetuneConfig, bucketed_batches, collate, encode_example, lr_at, sum_loss, train
from imm.world.tokenizer import train_tokenizer

from tiny import tiny_llama


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["Question: 2 + 3 = ?\nAnswer: 2 + 3 = 5. The answer is 5."] * 20, vocab_size=300)


def tiny_model(vocab: int) -> LlamaForCausalLM:
    return tiny_llama(vocab, max_position_embeddings=128)


def test_loss_mask_covers_the_response_and_eos_only(tok):
    prompt, response = "Question: 2 + 3 = ?", " 5"
    ids, labels = encode_example(tok, prompt, response, max_length=64)
    n_prompt = len(tok(prompt)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    assert len(ids) == n_prompt + len(tok(response)["input_ids"]) + 1


def test_an_example_whose_question_and_response_do_not_fit_is_dropped_not_cut(tok):
    """Cutting from the right would keep prompt tokens and lose the response (no loss left): None instead."""
    assert encode_example(tok, "Question: 2 + 3 = ?", " 5", max_length=4) is None
    n = len(tok("Question: 2 + 3 = ?")["input_ids"]) + len(tok(" 5")["input_ids"]) + 1
    ids, labels = encode_example(tok, "Question: 2 + 3 = ?", " 5", max_length=n)
    assert len(ids) == len(labels) == n and labels[-1] == tok.eos_token_id


def test_collate_pads_right_and_masks_padding():
    batch = collate([([5, 6, 7], [IGNORE, 6, 7]), ([8], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]


def test_uniform_logits_give_ln_vocab_per_labelled_token():
    """With lm_head zeroed every logit is 0, so each predicted token costs ln(V).
    Labels [-100, 6, 7] and [8, -100, -100]: after the shift the targets are [6, 7] and [-100, -100]
    (position 0's label is never predicted), so 2 tokens carry loss: total 2·ln(V)."""
    model = tiny_model(vocab=50)
    torch.nn.init.zeros_(model.lm_head.weight)
    loss, n = sum_loss(model, collate([([5, 6, 7], [IGNORE, 6, 7]), ([8], [8])], pad_id=0))
    assert n == 2
    assert float(loss.detach()) == pytest.approx(2 * math.log(50), rel=1e-5)


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    """total 10, warm-up 2: steps 0, 1 -> 1/2, 2/2; step 2 starts the cosine at 1; step 6 is halfway
    through the 8 decay steps -> 0.5; step 10 -> 0."""
    assert [lr_at(s, 10, 2) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_at(6, 10, 2) == pytest.approx(0.5)
    assert lr_at(10, 10, 2) == pytest.approx(0.0)


def test_bucketed_batches_cover_every_example_once_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(10, 100) for _ in range(640)]
    batches = bucketed_batches(lengths, 16, 10, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(640))

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)
    shuffled = list(range(640))
    random.Random(2).shuffle(shuffled)
    assert padding(batches) < 0.2 * padding([shuffled[i:i + 16] for i in range(0, 640, 16)])


def test_training_lowers_the_loss_on_its_data(tok):
    model = tiny_model(vocab=len(tok))
    pairs = [("Question: 2 + 3 = ?\nAnswer:", " 2 + 3 = 5. The answer is 5.")] * 32
    batch = collate([encode_example(tok, p, r, 64) for p, r in pairs[:4]], tok.pad_token_id)
    before = float(sum_loss(model, batch)[0].detach())
    stats = train(model, tok, pairs, FinetuneConfig(learning_rate=1e-2, epochs=10, batch_size=8), desc=None)
    after = float(sum_loss(model, batch)[0].detach())
    assert stats.steps == 40 and stats.examples == 32 and stats.padding_share == 0.0
    assert after < 0.5 * before


def test_accumulated_micro_batches_give_the_weights_of_one_batch(tok):
    """8 examples whose responses repeat a step 1-3 times (unequal target tokens per micro-batch), 3 epochs of
    one optimizer step each: batch 8 without accumulation, and 4 micro-batches of 2 accumulated, see the same
    8 examples per step and the same schedule, so they must reach the same weights. AdamW moves a weight by at
    most lr = 1e-3 per step; the two differ only in float32 summation order, which we allow 1e-5 (1% of one
    step). Normalising each micro-batch by its own token count instead misses by ~5e-3."""
    pairs = [(f"Question: {a} + {a + 3} = ?", " " + " ".join([f"{a} + {a + 3} = {2 * a + 3}."] * (1 + a % 3)))
             for a in range(8)]

    def weights(batch_size: int, grad_accum: int) -> dict[str, torch.Tensor]:
        model = tiny_model(len(tok))
        cfg = FinetuneConfig(learning_rate=1e-3, epochs=3, batch_size=batch_size, grad_accum=grad_accum,
                             warmup_ratio=0.0)
        assert train(model, tok, pairs, cfg, seed=0, desc=None).steps == 3
        return model.state_dict()

    one, accumulated, init = weights(8, 1), weights(2, 4), tiny_model(len(tok)).state_dict()
    for name in one:
        assert torch.allclose(one[name], accumulated[name], rtol=0, atol=1e-5), name
    assert max(float((one[n] - init[n]).abs().max()) for n in one) > 2e-3  # the weights did move (~2.5 lr)
