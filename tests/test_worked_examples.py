"""Worked examples never come from a set that is evaluated: a data set that comes as one file (SVAMP) is read
for its train split and its test split alike, so with prompt.shots its worked examples come from the run's
train task instead; where there is none to take, the run stops with one line."""

import json

import pytest

from imm.errors import UserError
from imm.prompts import PromptConfig, prompter, worked_examples_from
from imm.tasks.registry import get_task

SVAMP_ROWS = [{"ID": f"chal-{i}", "Body": f"Dan has {i} apples.", "Question": "How many apples does Dan have?",
               "Equation": f"( {i}.0 + 0.0 )", "Answer": float(i)} for i in range(1, 7)]
GSM8K_TRAIN = [{"question": f"Ann has {i} pens and buys 1 more. How many pens?",
                "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(10, 14)]
GSM8K_TEST = [{"question": "Bo has 2 cats and gets 2 more. How many cats?", "answer": "2 + 2 = 4\n#### 4"}]


@pytest.fixture
def tasks(tmp_path):
    svamp = tmp_path / "SVAMP.json"
    svamp.write_text(json.dumps(SVAMP_ROWS))
    gsm8k = tmp_path / "gsm8k"
    gsm8k.mkdir()
    for split, rows in (("train", GSM8K_TRAIN), ("test", GSM8K_TEST)):
        (gsm8k / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return get_task(f"svamp={svamp}"), get_task(f"gsm8k={gsm8k}")


def test_a_data_set_given_as_one_file_reads_one_source_for_both_splits(tasks):
    svamp, gsm8k = tasks
    assert svamp.source("train") == svamp.source("test")
    assert gsm8k.source("train") != gsm8k.source("test")


def test_svamps_worked_examples_come_from_the_train_task_never_from_svamp(tasks):
    """2 shots for the first 3 SVAMP questions: every worked example is one of GSM8K's 4 train questions."""
    svamp, gsm8k = tasks
    asked = svamp.problems("test")[:3]
    ask = prompter(svamp, PromptConfig(shots=2), asked=asked, fallback=gsm8k)
    train_questions = {p.question for p in gsm8k.problems("train")}
    for problem in asked:
        shown = ask.shots_for(problem)
        assert len(shown) == 2 and {s.question for s in shown} <= train_questions
        assert "Dan has" not in ask(problem).split("Question: ")[1]  # the first question block is a GSM8K one


def test_a_task_with_its_own_train_split_keeps_its_own_worked_examples(tasks):
    svamp, gsm8k = tasks
    assert worked_examples_from(gsm8k, svamp) is gsm8k


def test_with_no_other_train_split_the_run_stops_with_one_line(tasks):
    svamp, _ = tasks
    with pytest.raises(UserError, match="task svamp has no train split apart from the set it is evaluated on") as err:
        prompter(svamp, PromptConfig(shots=2), asked=svamp.problems("test")[:2], fallback=svamp)
    assert "prompt.shots=0" in str(err.value) and "\n" not in str(err.value)


def test_without_shots_nothing_is_asked_of_the_train_split(tasks):
    svamp, _ = tasks
    assert prompter(svamp, PromptConfig(shots=0), fallback=svamp).pool == ()
