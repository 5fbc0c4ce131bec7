"""What every task is: problems with gold answers, a prompt, and a judge (docs/method.md §2 formats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from imm import verify

# [paper code] few-shot CoT prompt ending in "Let's think step by step."; answers end "The answer is N".
COT_TRIGGER = "Let's think step by step."
STOP_STRINGS = ("\nQuestion:", "\n\n")


@dataclass(frozen=True)
class Problem:
    task: str
    id: str
    question: str
    answer: str  # gold final answer, as text ("42", "\\frac{1}{2}", "C")
    solution: str = ""  # gold chain of thought ending "The answer is N", where the data set has one


class Task:
    """A named data set. Subclasses set `name`, `answer_kind` and implement `problems`."""

    name: str = ""
    answer_kind: str = "number"  # number | math | choice: how verify compares answers
    stop: tuple[str, ...] = STOP_STRINGS  # where a completion ends, besides the end-of-text token

    def problems(self, split: str) -> list[Problem]:
        raise NotImplementedError

    def source(self, split: str) -> str | None:
        """Where `split` is read from (None: the task has no such split); two splits of one source are one set."""
        return f"{self.name}:{split}"

    def prompt(self, problem: Problem, shots: Sequence[Problem] = (), cue: str = COT_TRIGGER) -> str:
        """Zero-shot (no shots) or few-shot chain-of-thought prompt; the model continues after it.
        (imm.prompts builds every prompt of a run through this, or through a chat template.)"""
        demos = "".join(f"{_question_block(s, cue)} {s.solution}\n\n" for s in shots)
        return demos + _question_block(problem, cue)

    def check(self, completion: str, problem: Problem, metric: str = verify.STRICT) -> verify.Verdict:
        """The one definition of correct: used by the training filter and by every reported metric."""
        return verify.check(completion, problem.answer, kind=self.answer_kind, metric=metric)

    def check_many(
        self, completions: Sequence[str], problems: Sequence[Problem], metric: str = verify.STRICT
    ) -> list[verify.Verdict]:
        """`check` for many (completion, problem) pairs at once: the same verdicts, with math answers
        judged in parallel worker processes instead of one round trip each."""
        golds = [p.answer for p in problems]
        return verify.check_many(completions, golds, kind=self.answer_kind, metric=metric)


def _question_block(problem: Problem, cue: str = COT_TRIGGER) -> str:
    return f"Question: {problem.question}\nAnswer: {cue}".rstrip()
