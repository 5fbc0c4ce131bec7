"""D_t is written in the student's words: a teacher with another tokenizer and chat template writes S_t, and the
verify stage rebuilds every training prompt with the student's prompter from the problem id, keeping only the
completion text. A space goes before the completion only after a plain prompt (which ends with the cue)."""

import dataclasses

import pytest
from tiny import tiny_llama

from imm.config import RunConfig, from_dict
from imm.layout import RunLayout, read_jsonl
from imm.loop import real_stages
from imm.models import load_tokenizer, save_model
from imm.outputs import atomic_write_jsonl
from imm.prompts import PromptConfig, prompter
from imm.sampling import Sample
from imm.tasks.registry import get_task
from imm.world.tokenizer import train_tokenizer

TEACHER_TEMPLATE = ("{% for m in messages %}<|teacher-{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
                    "{% if add_generation_prompt %}<|teacher-assistant|>{% endif %}")
STUDENT_TEMPLATE = ("{% for m in messages %}[{{ m.role }}]\n{{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant]\n{% endif %}")


def teacher_tokenizer():
    """Another vocabulary (trained on other text, 300 tokens) and another chat template than any student's."""
    tok = train_tokenizer(["The teacher speaks: 12 + 30 = 42. The answer is 42."] * 10, vocab_size=300)
    tok.chat_template = TEACHER_TEMPLATE
    return tok


def student(tmp_path, template: str | None):
    """A tiny checkpoint with the built-in tokenizer, with or without a chat template."""
    tok = load_tokenizer("builtin")
    tok.chat_template = template
    return save_model(tiny_llama(tokenizer=tok, hidden=16, heads=2, layers=1), tok, tmp_path / "student")


def teacher_samples(path, chat: str = "on"):
    """Three verified completions by the teacher, each under the teacher's own chat prompt."""
    task = get_task("arith")
    problems = task.problems("train")[:3]
    ask = prompter(task, PromptConfig(chat=chat), teacher_tokenizer())
    samples = [Sample(p.id, 0, ask(p), "\n" + p.solution + " ", p.answer, p.answer, True, True, 9, 0.1)
               for p in problems]
    atomic_write_jsonl(path, samples)
    return problems, samples


def written_dataset(tmp_path, template, **prompt):
    cfg = from_dict(RunConfig, {"data": {"train_task": "arith"}, "prompt": prompt})
    problems, samples = teacher_samples(tmp_path / "samples.jsonl")
    base = student(tmp_path, template)
    real_stages(cfg, RunLayout(tmp_path / "run"), base).verify(tmp_path / "samples.jsonl", tmp_path / "stats.json",
                                                             tmp_path / "dataset.jsonl")
    return cfg, base, problems, samples, read_jsonl(tmp_path / "dataset.jsonl")


@pytest.mark.parametrize("template", [None, STUDENT_TEMPLATE], ids=["plain-student", "chat-student"])
def test_the_student_trains_on_its_own_prompts_not_the_teachers(tmp_path, template):
    """The teacher's prompts carry '<|teacher-'; no training prompt may. Each prompt is the student's prompter's
    prompt of the problem with that id; the response is the stripped completion, after one space only for the
    plain student."""
    cfg, base, problems, samples, dataset = written_dataset(tmp_path, template)
    ask = prompter(get_task("arith"), cfg.prompt, load_tokenizer(base))
    assert ask.chat == (template is not None)
    assert all("<|teacher-" in s.prompt for s in samples)
    for row, problem, sample in zip(dataset, problems, samples):
        assert row["id"] == problem.id and "<|teacher-" not in row["prompt"]
        assert row["prompt"] == ask(problem)
        assert row["response"] == ("" if ask.chat else " ") + sample.completion.strip()
        assert row["question_at"] == 0  # finetune.prompt_shots defaults to 0: the question alone


def test_the_student_prompt_ends_with_its_own_assistant_header_and_no_space_follows(tmp_path):
    *_, dataset = written_dataset(tmp_path, STUDENT_TEMPLATE)
    for row in dataset:
        assert row["prompt"].endswith("[assistant]\n") and not row["response"].startswith(" ")


def test_training_prompts_take_finetune_prompt_shots_worked_examples(tmp_path):
    """prompt.shots (sampling, evaluation) is 2 here and finetune.prompt_shots 0: D_t's prompts are the plain
    zero-shot prompts "Question: q\\nAnswer: <cue>", as the paper's code trains on the question alone."""
    *_, problems, _, dataset = written_dataset(tmp_path, None, shots=2)
    task = get_task("arith")
    assert [row["prompt"] for row in dataset] == [task.prompt(p) for p in problems]
    assert all(row["prompt"].startswith("Question: ") for row in dataset)


def test_with_prompt_shots_the_training_prompt_has_worked_examples_before_its_question(tmp_path):
    cfg = from_dict(RunConfig, {"data": {"train_task": "arith"}, "finetune": {"prompt_shots": 2}})
    teacher_samples(tmp_path / "samples.jsonl")
    base = student(tmp_path, None)
    real_stages(cfg, RunLayout(tmp_path / "run"), base).verify(tmp_path / "samples.jsonl", tmp_path / "stats.json",
                                                             tmp_path / "dataset.jsonl")
    task = get_task("arith")
    alone = {p.id: task.prompt(p) for p in task.problems("train")[:3]}
    for row in read_jsonl(tmp_path / "dataset.jsonl"):
        assert row["prompt"].count("Question: ") == 3 and row["question_at"] > 0
        assert row["prompt"][row["question_at"]:] == alone[row["id"]]


def test_a_sample_of_a_question_the_train_task_does_not_have_is_refused(tmp_path):
    from imm.errors import UserError
    from imm.verify.training_set import training_examples

    ask = prompter(get_task("arith"), PromptConfig(), load_tokenizer("builtin"))
    stray = dataclasses.replace(Sample("nowhere-1", 0, "", "The answer is 1.", "1", "1", True, True, 3, 0.0))
    with pytest.raises(UserError, match="nowhere-1"):
        training_examples([stray], ask)
