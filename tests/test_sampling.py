"""Generation settings are ours, not the checkpoint's: a model's own generation_config.json (a repetition
penalty, top-k, min-p, no-repeat n-grams, a temperature) changes neither greedy nor sampled completions."""

from imm.models import load_model
from imm.engines.hf import generate

PROMPTS = ["Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer: Let's think step by step.",
           "Question: A box holds 12 pens. 5 are taken out. How many pens are left?\nAnswer: Let's think step by step."]


def texts(model, tokenizer, **options):
    return [[c.text for c in group] for group in generate(model, tokenizer, PROMPTS, max_new_tokens=40, **options)]


def test_a_checkpoints_generation_defaults_change_nothing():
    model, tokenizer = load_model("builtin", device="cpu")
    greedy, sampled = texts(model, tokenizer), texts(model, tokenizer, k=3, temperature=0.8, seed=5)
    for key, value in {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "top_k": 2, "min_p": 0.3,
                       "temperature": 0.1, "typical_p": 0.5}.items():
        setattr(model.generation_config, key, value)
    assert texts(model, tokenizer) == greedy
    assert texts(model, tokenizer, k=3, temperature=0.8, seed=5) == sampled
    assert greedy[0][0].startswith(" 3 + 4 = 7.")  # the repetition penalty alone would change this answer
