"""Sampling: K chain-of-thought completions per prompt from the generator (docs/method.md §2, S_t).

`sample_questions` is the loop's sampling stage: S_t as `Sample` records, each judged by the task's
one checker, written to samples.jsonl, with the generation settings beside it (generation.json).
The completions come from the engine `sampling.backend` names (imm.engines).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imm.config import DataConfig, ModelConfig, SampleConfig
from imm.errors import UserError
from imm.prompts import PromptConfig


@dataclass(frozen=True)
class Sample:
    """One completion of S_t and its verdict; a line of samples.jsonl."""

    id: str  # the question's id in its task
    sample: int  # 0..K-1 for this question
    prompt: str
    completion: str
    gold: str
    extracted: str | None
    correct: bool  # the task's one checker (imm.verify), as in evaluation
    steps_correct: bool  # every written step `a op b = c` is right
    num_tokens: int
    mean_entropy: float


def check_sampling(s: SampleConfig) -> None:
    """K, the temperature and top-p, before any model is loaded."""
    if s.k <= 0:
        raise UserError(f"sampling.k must be positive, got {s.k}")
    if s.temperature < 0:
        raise UserError(f"sampling.temperature must be >= 0, got {s.temperature}")
    if s.temperature == 0 and s.k != 1:
        raise UserError(f"sampling.temperature=0 is greedy: its {s.k} samples per question would be identical; "
                        f"set sampling.k=1 (the paper's greedy sampling) or a temperature above 0")
    if not 0 < s.top_p <= 1:
        raise UserError(f"sampling.top_p must be in (0, 1], got {s.top_p}")


def sample_questions(model_path: Path, data: DataConfig, prompt: PromptConfig, s: SampleConfig,
                     m: ModelConfig, seed: int, out: Path) -> str:
    """S_t: K completions of every training question by the model at `model_path`, judged, written to `out`."""
    from imm.engines import open_engine
    from imm.layout import generation_record
    from imm.outputs import atomic_write_json, atomic_write_jsonl
    from imm.prompts import prompter
    from imm.tasks.registry import get_task
    from imm.verify import steps_correct

    task = get_task(data.train_task)
    problems = task.problems("train")[:data.train_questions]
    if not problems:
        raise UserError(f"task {data.train_task} has no training questions; pick another data.train_task")
    options = dict(k=s.k, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens)
    with open_engine(model_path, s, m, batch_size=s.batch_size) as engine:
        ask = prompter(task, prompt, engine.tokenizer)
        prompts = [ask(p) for p in problems]
        groups = engine.generate(prompts, stop=ask.stop, seed=seed, desc="sample", **options)
        record = engine.record(stop=ask.stop, **options) | {"chat_template": ask.chat}
    flat = [(problem, prompt, j, c) for problem, prompt, group in zip(problems, prompts, groups)
            for j, c in enumerate(group)]
    verdicts = task.check_many([c.text for *_, c in flat], [problem for problem, *_ in flat])
    samples = [Sample(problem.id, j, prompt, c.text, problem.answer, v.extracted, v.correct, steps_correct(c.text),
                      c.num_tokens, c.mean_entropy) for (problem, prompt, j, c), v in zip(flat, verdicts)]
    atomic_write_json(generation_record(out), record)
    atomic_write_jsonl(out, samples)
    return f"{len(samples)} samples of {len(problems)} questions"


def read_samples(path: Path) -> list[Sample]:
    from imm.layout import read_jsonl

    return [Sample(**row) for row in read_jsonl(path)]
