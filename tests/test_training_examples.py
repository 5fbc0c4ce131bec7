"""Training examples keep their whole response: the prompt is shortened from the left but keeps its question,
an example that cannot fit is dropped and counted, and a max_length that fits none stops the stage."""

import json

import pytest
from tiny import tiny_llama

from imm.cli import main
from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune import IGNORE, encode_examples
from imm.finetune_launch import finetune_checkpoint
from imm.models import load_tokenizer, save_model
from imm.prompts import PromptConfig, prompter
from imm.tasks.registry import get_task
from imm.verify.training_set import Example


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("builtin")


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def four_shot_examples(tok, n: int = 6) -> list[Example]:
    task = get_task("arith")
    ask = prompter(task, PromptConfig(shots=4), tok)
    problems = task.problems("train")[:n]
    return [Example(p.id, prompt, ask.response(p.solution), ask.question_at(p, prompt))
            for p in problems for prompt in [ask(p)]]


def test_the_question_part_is_the_zero_shot_prompt_of_a_plain_prompt(tok):
    """A plain few-shot prompt is the worked examples followed by the zero-shot prompt itself, so what follows
    question_at is exactly the zero-shot prompt, and a zero-shot prompt is all question (question_at 0)."""
    task = get_task("arith")
    problem = task.problems("train")[0]
    few, alone = prompter(task, PromptConfig(shots=4), tok), prompter(task, PromptConfig(shots=0), tok)
    prompt = few(problem)
    assert prompt[few.question_at(problem, prompt):] == alone(problem)
    assert few.question_at(problem, prompt) > 0 and alone.question_at(problem, alone(problem)) == 0


def test_a_shortened_prompt_loses_worked_examples_from_the_left_only(tok):
    """With room for 2 tokens beyond question + response + eos, the prompt keeps the last 2 tokens of the worked
    examples and the whole question: ids = context[-2:] + question + response + eos, labels -100 on the prompt."""
    e = four_shot_examples(tok, 1)[0]
    context, question, response = ids(tok, e.prompt[:e.question_at]), ids(tok, e.prompt[e.question_at:]), ids(tok, e.response)
    max_length = len(question) + len(response) + 1 + 2
    encoded = encode_examples(tok, [(e.prompt, e.response, e.question_at)], max_length)
    (got_ids, labels), = encoded.examples
    assert got_ids == context[-2:] + question + response + [tok.eos_token_id]
    assert labels == [IGNORE] * (2 + len(question)) + response + [tok.eos_token_id]
    assert (encoded.prompt_truncated, encoded.dropped_too_long) == (1, 0)


def test_with_many_shots_and_a_small_max_length_no_kept_example_loses_its_response(tok):
    """The first 6 arith train problems, 4 worked examples each: prompts of 405-413 tokens, question + response
    + eos of 92, 87, 82, 91, 93, 92 tokens (counted with the built-in tokenizer). At max_length 91 the 3 that
    need 92-93 are dropped; the other 3 are kept with a shortened prompt, each ending with its whole response +
    eos, all of it labelled."""
    examples = four_shot_examples(tok)
    max_length = 91
    pairs = [(e.prompt, e.response, e.question_at) for e in examples]
    needs = [len(ids(tok, e.prompt[e.question_at:])) + len(ids(tok, e.response)) + 1 for e in examples]
    assert needs == [92, 87, 82, 91, 93, 92] and all(len(ids(tok, e.prompt)) > 400 for e in examples)
    encoded = encode_examples(tok, pairs, max_length)
    assert (len(encoded.examples), encoded.prompt_truncated, encoded.dropped_too_long) == (3, 3, 3)
    fitting = [e for e, n in zip(examples, needs) if n <= max_length]
    for e, (got_ids, labels) in zip(fitting, encoded.examples):
        whole = ids(tok, e.response) + [tok.eos_token_id]
        assert len(got_ids) <= max_length and got_ids[-len(whole):] == whole
        assert [t for t in labels if t != IGNORE] == whole


def tiny_init(tmp_path, tok):
    return save_model(tiny_llama(tokenizer=tok, hidden=16, heads=2), tok, tmp_path / "init")


def test_training_stats_count_shortened_and_dropped_examples(tmp_path, tok):
    """The same 6 examples at max_length 91 as above: 3 kept with shortened prompts, 3 dropped."""
    examples = four_shot_examples(tok)
    cfg = FinetuneConfig(max_length=91, epochs=1, batch_size=4, prompt_shots=4)
    message = finetune_checkpoint(tiny_init(tmp_path, tok), examples, cfg, tmp_path / "F1", tmp_path / "stats.json",
                                  seed=0, device="cpu")
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (stats["examples"], stats["prompt_truncated"], stats["dropped_too_long"]) == (3, 3, 3)
    assert message.startswith("3 examples (3 prompts shortened, 3 dropped as too long)")


def test_a_max_length_below_every_response_stops_with_one_line_and_writes_nothing(tmp_path, tok):
    examples = four_shot_examples(tok)
    shortest = min(len(ids(tok, e.response)) for e in examples)
    cfg = FinetuneConfig(max_length=shortest, epochs=1)
    with pytest.raises(UserError, match=r"finetune\.max_length=\d+ .* raise finetune\.max_length to at least") as err:
        finetune_checkpoint(tiny_init(tmp_path, tok), examples, cfg, tmp_path / "F1", tmp_path / "stats.json",
                            seed=0, device="cpu")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "F1").exists() and not (tmp_path / "stats.json").exists()


@pytest.mark.slow
def test_imm_run_with_a_max_length_below_every_response_exits_2(tmp_path, capsys):
    """The built-in model's arith questions with their answers are longer than 16 tokens (the least
    finetune.max_length allows): no example fits, the run stops at the first fine-tune with exit status 2 and
    one line naming finetune.max_length."""
    code = main(["run", "--config", "smoke", f"out_dir={tmp_path}", "finetune.max_length=16", "model.threads=1",
                 "arms=[self_improve]", "analysis.enabled=false", "iterations=1", "data.train_questions=8",
                 "eval.limit=4", "eval.diversity_k=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "finetune.max_length=16" in err[-1]


def test_the_gradient_probe_fits_its_examples_by_the_same_rule(tok):
    """4-shot probe prompts (400+ tokens) at the run's max_length 120: every probe example keeps its whole gold
    solution + eos as labels, and the gradient reaches every block (under the old cut at the right end, the
    responses were lost and every block's gradient was 0)."""
    from imm.analysis.importance import gradient_importance, probe_examples, probe_set

    probe = probe_set("arith", 4, PromptConfig(shots=4), max_length=120)
    examples = probe_examples(tok, probe)
    assert len(examples) == 4
    for problem, (got_ids, labels) in zip(probe.problems, examples):
        whole = ids(tok, " " + problem.solution) + [tok.eos_token_id]
        assert len(got_ids) <= 120 and [t for t in labels if t != IGNORE] == whole
    norms = gradient_importance(tiny_llama(tokenizer=tok, hidden=16, heads=2), tok, probe).values
    assert len(norms) == 2 and all(v > 0 for v in norms.values())


def test_a_probe_max_length_below_every_solution_stops_with_one_line(tok):
    from imm.analysis.importance import probe_examples, probe_set

    with pytest.raises(UserError, match=r"probe examples of arith fits finetune\.max_length=5 .* at least"):
        probe_examples(tok, probe_set("arith", 4, PromptConfig(shots=4), max_length=5))
