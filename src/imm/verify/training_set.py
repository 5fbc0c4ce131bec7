"""D_t = verify(S_t): the verified samples that fine-tuning trains on (docs/method.md §2).

A sample is kept when the task's one checker judged it correct (`Sample.correct`, the same verdict
evaluation uses), optionally with every written step right, de-duplicated per question and capped.
Each kept sample is a (problem id, completion) pair; its training prompt is built anew by the student's
prompter (the student's tokenizer and chat template, `finetune.prompt_shots` worked examples), not taken
from the sample: in distillation a teacher with another template wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from imm.config import DataConfig, FilterConfig, FinetuneConfig
from imm.errors import UserError
from imm.prompts import PromptConfig, Prompter
from imm.sampling import Sample


@dataclass(frozen=True)
class Example:
    """One training example of D_t; a line of dataset.jsonl."""

    id: str
    prompt: str  # the student's prompt of the problem (imm.prompts)
    response: str  # the completion; after a plain prompt with one space before it (Prompter.response)
    question_at: int = 0  # prompt[question_at:] is the question's own part, never cut (Prompter.question_at)


def select(f: FilterConfig, samples: Sequence[Sample]) -> list[Sample]:
    """The verified samples, optionally step-checked, de-duplicated and capped per question."""
    kept, per_question, seen = [], {}, set()
    for sample in samples:
        if not sample.correct or (f.check_steps and not sample.steps_correct):
            continue
        key = (sample.id, sample.completion.strip())
        if f.dedup and key in seen:
            continue
        if f.max_per_question and per_question.get(sample.id, 0) >= f.max_per_question:
            continue
        seen.add(key)
        per_question[sample.id] = per_question.get(sample.id, 0) + 1
        kept.append(sample)
    return kept


def student_prompter(data: DataConfig, prompt: PromptConfig, f: FinetuneConfig, student: Path) -> Prompter:
    """The prompter of D_t: the student's (θ0's) tokenizer and chat template, finetune.prompt_shots worked
    examples drawn as sampling draws its own."""
    import dataclasses

    from imm.models import load_tokenizer
    from imm.prompts import prompter
    from imm.tasks.registry import get_task

    return prompter(get_task(data.train_task), dataclasses.replace(prompt, shots=f.prompt_shots), load_tokenizer(student))


def training_examples(samples: Sequence[Sample], ask: Prompter) -> list[Example]:
    """Each sample's completion under the student's prompt of its problem (looked up by id in the train split)."""
    problems = {p.id: p for p in ask.task.problems("train")}
    examples = []
    for sample in samples:
        if sample.id not in problems:
            raise UserError(f"sample of question {sample.id!r} names no question of task {ask.task.name}'s train split; "
                            f"sample again with the run's data.train_task (--restart)")
        prompt = ask(problems[sample.id])
        examples.append(Example(sample.id, prompt, ask.response(sample.completion),
                                ask.question_at(problems[sample.id], prompt)))
    return examples


def build_training_set(f: FilterConfig, samples: Sequence[Sample], out: Path, stats_out: Path, ask: Prompter) -> str:
    """Write D_t (`out`, the output that marks the stage done, last) and its counts (`stats_out`); `ask` is the
    student's prompter of the train task."""
    from imm.outputs import atomic_write_json, atomic_write_jsonl

    dataset = training_examples(select(f, samples), ask)
    stats = {"samples": len(samples), "correct": sum(s.correct for s in samples),
             "questions_solved": len({s.id for s in samples if s.correct}), "kept": len(dataset)}
    if not dataset:
        stats["warning"] = "no verified sample in this iteration; F_t is a copy of its init"
        print(f"warning: {out.parent}: no verified sample; continuing with F_t = init", flush=True)
    atomic_write_json(stats_out, stats)
    atomic_write_jsonl(out, dataset)
    return f"{stats['correct']}/{stats['samples']} verified, {stats['questions_solved']} questions solved, {len(dataset)} kept"


def read_training_set(path: Path) -> list[Example]:
    from imm.layout import read_jsonl

    return [Example(**row) for row in read_jsonl(path)]
