"""D_t = verify(S_t): the verified samples that fine-tuning trains on (METHOD.md §2).

A sample is kept when the task's one checker judged it correct (`Sample.correct`, the same verdict
evaluation uses), optionally with every written step right, de-duplicated per question and capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from imm.config import FilterConfig
from imm.sampling import Sample


@dataclass(frozen=True)
class Example:
    """One training example of D_t; a line of dataset.jsonl."""

    id: str
    prompt: str
    response: str  # " " + the completion: the model continues the prompt after one space


def select(f: FilterConfig, samples: Sequence[Sample]) -> list[Example]:
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
        kept.append(Example(sample.id, sample.prompt, " " + sample.completion.strip()))
    return kept


def build_training_set(f: FilterConfig, samples: Sequence[Sample], out: Path, stats_out: Path) -> str:
    """Write D_t (`out`, the output that marks the stage done, last) and its counts (`stats_out`)."""
    from imm.outputs import atomic_write_json, atomic_write_jsonl

    dataset = select(f, samples)
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
