"""Prompts as the paper's code writes them, as config: worked examples, the chain-of-thought cue, and the
chat template of instruct models. One builder serves sampling, evaluation and the analysis probe, and
every sample keeps the prompt it was written for.

    plain (base models)     [shots: "Question: q\\nAnswer: <cue> <solution>\\n\\n"] "Question: q\\nAnswer: <cue>"
    chat (instruct models)  the tokenizer's chat template over the same turns: the user asks
                            "<instruction>\\n\\n<question>\\n<cue>", the assistant answers with a solution
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence, Union

from imm.errors import UserError
from imm.tasks.base import COT_TRIGGER, Problem, Task

CHAT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class PromptConfig:
    shots: int = 0  # [paper code: few-shot CoT] worked examples from the train split, never an asked question
    cue: str = COT_TRIGGER  # [paper code] the chain-of-thought cue after the question
    chat: Union[str, bool] = "auto"  # auto: the tokenizer's chat template when it has one | on | off [ours]
    # [ours] the answer format, told to chat models (base models learn it from the worked examples)
    instruction: str = 'Solve the problem step by step, then end with "The answer is N." where N is the final answer.'


def chat_mode(chat: str | bool) -> str:
    """YAML reads a bare on/off as true/false: both spellings mean the same mode."""
    return {True: "on", False: "off"}.get(chat, chat) if isinstance(chat, bool) else chat


def check_prompt(p: PromptConfig) -> None:
    if p.shots < 0:
        raise UserError(f"prompt.shots must be 0 or more, got {p.shots}")
    if chat_mode(p.chat) not in CHAT_MODES:
        raise UserError(f"prompt.chat must be one of {', '.join(CHAT_MODES)}, got {p.chat!r}")


@dataclass(frozen=True)
class Prompter:
    """Builds the prompt of each problem of `task` the same way wherever the model is asked."""

    task: Task
    config: PromptConfig = field(default_factory=PromptConfig)
    tokenizer: object = None  # needed for the chat template
    pool: tuple[Problem, ...] = ()  # candidate worked examples, in order

    @property
    def chat(self) -> bool:
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        mode = chat_mode(self.config.chat)
        if mode == "on" and not has_template:
            raise UserError("prompt.chat=on but the model's tokenizer has no chat template; use prompt.chat=auto or off")
        return mode == "on" or (mode == "auto" and has_template)

    @property
    def stop(self) -> tuple[str, ...]:
        """Where a completion ends besides the end-of-text token: a chat answer ends with its turn."""
        return () if self.chat else self.task.stop

    def shots_for(self, problem: Problem) -> list[Problem]:
        return [s for s in self.pool if s.id != problem.id and s.question != problem.question][:self.config.shots]

    def __call__(self, problem: Problem) -> str:
        shots = self.shots_for(problem)
        if not self.chat:
            return self.task.prompt(problem, shots, cue=self.config.cue)
        turns = []
        for demo in [*shots, problem]:
            turns.append({"role": "user", "content": f"{self.config.instruction}\n\n{demo.question}\n{self.config.cue}".strip()})
            if demo is not problem:
                turns.append({"role": "assistant", "content": demo.solution})
        return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    def question_at(self, problem: Problem, prompt: str) -> int:
        """Where the asked question's own part of `prompt` (this prompter's prompt of `problem`) begins: what
        comes before it (worked examples, and a chat template's header) a training example may lose from the
        left; from there on it is kept whole. 0 for a zero-shot prompt: all of it is the question's."""
        if not self.shots_for(problem):
            return 0
        alone = replace(self, config=replace(self.config, shots=0), pool=())(problem)
        common = 0
        while common < min(len(prompt), len(alone)) and prompt[-1 - common] == alone[-1 - common]:
            common += 1
        return len(prompt) - common

    def response(self, completion: str) -> str:
        """A completion as a training response: a plain prompt ends with the cue and the model continues after
        one space; a chat prompt ends with the assistant's header, after which the model writes no space."""
        return completion.strip() if self.chat else " " + completion.strip()


def worked_examples_from(task: Task, fallback: Task) -> Task:
    """The task whose train split shows `task`'s worked examples: its own, unless it has none or it is the very
    set `task` is evaluated on (a data set that comes as one file, e.g. SVAMP's); then `fallback`'s (the run's
    train task, whose answers end the same way)."""
    evaluated = task.source("test")
    if task.source("train") not in (None, evaluated):
        return task
    if fallback.source("train") not in (None, evaluated):
        return fallback
    raise UserError(f"task {task.name} has no train split apart from the set it is evaluated on ({evaluated}), so "
                    f"prompt.shots has no worked examples to show for it; give its train split as a file of its own "
                    f"or set prompt.shots=0")


def prompter(task: Task, p: PromptConfig, tokenizer=None, asked: Sequence[Problem] = (),
             fallback: Task | None = None) -> Prompter:
    """A prompter whose worked examples come from the task's train split and never repeat an asked question.
    With `fallback` (evaluation), never from the set that is evaluated either (`worked_examples_from`)."""
    if not p.shots:
        return Prompter(task, p, tokenizer)
    asked_questions = {a.question for a in asked}
    shown = worked_examples_from(task, fallback) if fallback is not None else task
    pool = [s for s in shown.problems("train") if s.solution and s.question not in asked_questions]
    if len(pool) < p.shots:
        raise UserError(f"task {shown.name} has {len(pool)} worked examples outside the asked questions, fewer than "
                        f"prompt.shots={p.shots}; lower prompt.shots or give a train split with solutions")
    return Prompter(task, p, tokenizer, tuple(pool[:p.shots + 1]))  # one spare: a question never demonstrates itself
