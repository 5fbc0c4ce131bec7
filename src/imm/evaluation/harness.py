"""Evaluation of one model on one task: greedy accuracy, and with K samples pass@K, maj@K and collapse.

`evaluate` is what the loop calls after every iteration and what `imm eval` calls per task; both
judge answers with the task's `check_many`, i.e. the same `verify` function the training filter uses.
Metric names follow lm-evaluation-harness (`strict-match`, `flexible-extract`, `pass@K`, `maj@K`);
the diversity figures are defined in `imm.evaluation.diversity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from imm import verify
from imm.evaluation import diversity
from imm.tasks.base import Problem, Task

if TYPE_CHECKING:
    from imm.engines import Engine
    from imm.prompts import Prompter


class CompletionLike(Protocol):  # imm.engines.Completion
    text: str
    num_tokens: int
    mean_entropy: float


@dataclass(frozen=True)
class EvalResult:
    task: str
    n: int  # questions
    metrics: dict[str, float]
    rows: tuple[dict[str, Any], ...]  # one per completion: greedy first, then the K samples per question


@dataclass(frozen=True)
class Asked:
    """One task's questions to evaluate: greedy always, and k samples per question when k > 0."""

    task: Task
    problems: Sequence[Problem]
    prompter: "Prompter | None" = None  # imm.prompts; by default the task's zero-shot prompt
    k: int = 0
    temperature: float = 1.0
    top_p: float = 1.0


def evaluate(
    engine: "Engine", task: Task, problems: Sequence[Problem], *, k: int = 0, temperature: float = 1.0,
    top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0, prompter: "Prompter | None" = None,
) -> EvalResult:
    """Greedy accuracy (both metrics) and, for k > 0, the figures of k samples per question, from the
    completions of `engine` (imm.engines). Prompts come from `prompter` (imm.prompts: worked examples,
    chat template), by default the task's zero-shot prompt."""
    asked = Asked(task, problems, prompter, k, temperature, top_p)
    return evaluate_many(engine, [asked], max_new_tokens=max_new_tokens, seed=seed)[0]


def evaluate_many(engine: "Engine", asked: Sequence[Asked], *, max_new_tokens: int = 256,
                  seed: int = 0) -> list[EvalResult]:
    """`evaluate` of several tasks, with the greedy answers of all of them drawn in one call (one set of
    length-sorted batches; a prompt asked twice is answered once) and each task's samples as `evaluate`
    draws them (seed `seed`). Greedy decoding depends on nothing but the prompt, so the results equal
    per-task `evaluate` calls wherever a prompt's greedy answer does not depend on its batch mates. The
    greedy and the sampled requests go to the engine together (`generate_many`), so its workers share one
    queue of batches."""
    from imm.engines import Request
    from imm.prompts import Prompter

    prompters = [a.prompter or Prompter(a.task) for a in asked]
    prompts = [[ask(p) for p in a.problems] for a, ask in zip(asked, prompters)]
    requests, greedy_todo = [], []
    for stop in dict.fromkeys(tuple(ask.stop) for ask in prompters):  # one greedy request per set of stop strings
        todo = list(dict.fromkeys(p for ps, ask in zip(prompts, prompters) if tuple(ask.stop) == stop for p in ps))
        requests.append(Request(todo, 1, 0.0, 1.0, max_new_tokens, stop, seed, f"greedy ({len(todo)} prompts)"))
        greedy_todo.append((stop, todo))
    sampled_of = {}  # asked index -> its request
    for n, (a, ask, ps) in enumerate(zip(asked, prompters, prompts)):
        if a.k > 0:
            sampled_of[n] = len(requests)
            requests.append(Request(ps, a.k, a.temperature, a.top_p, max_new_tokens, tuple(ask.stop), seed,
                                    f"{a.task.name} k={a.k}"))
    done = engine.generate_many(requests)  # every greedy answer and every sample in one queue
    greedy: dict[tuple[str, tuple[str, ...]], CompletionLike] = {}
    for (stop, todo), groups in zip(greedy_todo, done):
        greedy |= {(p, stop): group[0] for p, group in zip(todo, groups)}
    results = []
    for n, (a, ask, ps) in enumerate(zip(asked, prompters, prompts)):
        sampled = done[sampled_of[n]] if n in sampled_of else None
        results.append(score_completions(a.task, a.problems, ps, [greedy[p, tuple(ask.stop)] for p in ps], sampled))
    return results


def score_completions(
    task: Task, problems: Sequence[Problem], prompts: Sequence[str], greedy: Sequence[CompletionLike],
    sampled: Sequence[Sequence[CompletionLike]] | None = None,
) -> EvalResult:
    """The metrics and rows of given completions: `evaluate` without the model (and its tests)."""
    rows = _judge(task, problems, prompts, [[g] for g in greedy], sample_labels=["greedy"])
    metrics = {m: _mean(r[_CORRECT[m]] for r in rows) for m in verify.METRICS}
    if sampled:
        k = len(sampled[0])
        sample_rows = _judge(task, problems, prompts, sampled, sample_labels=list(range(k)))
        metrics.update(sample_metrics(task, [sample_rows[i * k:(i + 1) * k] for i in range(len(problems))]))
        rows += sample_rows
    return EvalResult(task.name, len(problems), metrics, tuple(rows))


_CORRECT = {verify.STRICT: "correct", verify.FLEXIBLE: "flexible_correct"}


def _judge(
    task: Task, problems: Sequence[Problem], prompts: Sequence[str],
    completions: Sequence[Sequence[CompletionLike]], sample_labels: Sequence[str | int],
) -> list[dict[str, Any]]:
    """Rows for every completion (question-major), judged under both metrics in two batched calls."""
    flat = [(i, j, c) for i, group in enumerate(completions) for j, c in enumerate(group)]
    texts, owners = [c.text for _, _, c in flat], [problems[i] for i, _, _ in flat]
    strict = task.check_many(texts, owners, verify.STRICT)
    flexible = task.check_many(texts, owners, verify.FLEXIBLE)
    return [
        {"task": task.name, "id": problems[i].id, "sample": sample_labels[j], "prompt": prompts[i],
         "completion": c.text, "gold": problems[i].answer, "extracted": s.extracted, "correct": s.correct,
         "flexible_extracted": f.extracted, "flexible_correct": f.correct,
         "num_tokens": c.num_tokens, "mean_entropy": c.mean_entropy}
        for (i, j, c), s, f in zip(flat, strict, flexible)
    ]


def sample_metrics(task: Task, groups: Sequence[Sequence[dict[str, Any]]]) -> dict[str, float]:
    """pass@K, maj@K (strict-match), sample accuracy and the collapse figures of K rows per question. (EAD is
    not among them: its V must be one for every model compared, so the report computes it; imm.report.ead.)"""
    k = len(groups[0])
    keys = [[verify.answer_key(r["extracted"], task.answer_kind) for r in g] for g in groups]
    texts = [[r["completion"] for r in g] for g in groups]
    figures = {
        f"pass@{k}": _mean(any(r["correct"] for r in g) for g in groups),
        f"maj@{k}": _mean(_majority_correct(g, kk) for g, kk in zip(groups, keys)),
        "sample-accuracy": _mean(r["correct"] for g in groups for r in g),
        **{f"distinct-{n}": diversity.mean_over_questions(texts, lambda t, n=n: diversity.distinct_n(t, n))
           for n in range(1, 5)},
        "self-bleu": diversity.mean_over_questions(texts, diversity.self_bleu),
        "unique-answers": diversity.mean_over_questions(keys, diversity.unique_answers),
        "entropy": diversity.token_entropy([r["mean_entropy"] for g in groups for r in g],
                                           [r["num_tokens"] for g in groups for r in g]),
    }
    return {name: value for name, value in figures.items() if value is not None}  # e.g. no self-BLEU at K=1


def _majority_correct(group: Sequence[dict[str, Any]], keys: Sequence[Any]) -> bool:
    winner = diversity.majority(keys)
    return winner is not None and bool(group[winner]["correct"])


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else 0.0
