"""The one prompt builder: plain few-shot CoT prompts, worked examples that never repeat an asked question,
and the tokenizer's chat template for instruct models."""

import pytest

from imm.errors import UserError
from imm.prompts import PromptConfig, Prompter, check_prompt, prompter
from imm.tasks.base import Problem, Task


class Toy(Task):
    name = "toy"

    def problems(self, split):
        return [Problem("toy", f"{split}{i}", f"What is {i} + 1?", str(i + 1), f"{i} + 1 = {i + 1}. The answer is {i + 1}.")
                for i in range(3)]


class ChatTokenizer:
    chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"

    def apply_chat_template(self, turns, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "".join(f"<{t['role']}>{t['content']}" for t in turns) + "<assistant>"


def test_zero_shot_is_the_paper_codes_cot_prompt():
    task = Toy()
    ask = prompter(task, PromptConfig())
    assert ask(task.problems("test")[1]) == "Question: What is 1 + 1?\nAnswer: Let's think step by step."
    assert ask.stop == task.stop


def test_worked_examples_come_from_train_and_never_repeat_the_asked_question():
    """Asking train0 with 2 shots: train0 is skipped, so the demos are train1 and train2."""
    task = Toy()
    train = task.problems("train")
    ask = prompter(task, PromptConfig(shots=2))
    assert ask(train[0]) == ("Question: What is 1 + 1?\nAnswer: Let's think step by step. 1 + 1 = 2. The answer is 2.\n\n"
                             "Question: What is 2 + 1?\nAnswer: Let's think step by step. 2 + 1 = 3. The answer is 3.\n\n"
                             "Question: What is 0 + 1?\nAnswer: Let's think step by step.")
    with pytest.raises(UserError, match="toy has 2 worked examples outside the asked questions, fewer than prompt.shots=3"):
        prompter(task, PromptConfig(shots=3), asked=[train[0]])  # the test split repeats train0's question


def test_chat_models_get_their_template_and_stop_at_the_end_of_their_turn():
    task = Toy()
    ask = prompter(task, PromptConfig(shots=1, instruction="End with the answer."), ChatTokenizer())
    assert ask(task.problems("train")[0]) == (
        "<user>End with the answer.\n\nWhat is 1 + 1?\nLet's think step by step.<assistant>1 + 1 = 2. The answer is 2."
        "<user>End with the answer.\n\nWhat is 0 + 1?\nLet's think step by step.<assistant>")
    assert ask.stop == ()
    assert not Prompter(task, PromptConfig(chat="off"), ChatTokenizer()).chat
    with pytest.raises(UserError, match="has no chat template"):
        Prompter(task, PromptConfig(chat="on"), object()).chat


def test_yaml_on_and_off_mean_the_chat_modes():
    from imm.preflight import load_config

    assert Prompter(Toy(), load_config("smoke", ("prompt.chat=on",)).prompt, ChatTokenizer()).chat
    assert not Prompter(Toy(), load_config("smoke", ("prompt.chat=off",)).prompt, ChatTokenizer()).chat


def test_bad_prompt_settings_are_refused():
    with pytest.raises(UserError, match="prompt.chat must be one of auto, on, off"):
        check_prompt(PromptConfig(chat="yes"))
    with pytest.raises(UserError, match="prompt.shots must be 0 or more"):
        check_prompt(PromptConfig(shots=-1))
