"""The run's evaluation of one model: greedy accuracy on every in-domain and out-of-domain task, and
pass@K and the collapse figures on the in-domain test questions (METHOD.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imm.config import DataConfig, EvalConfig, ModelConfig, SampleConfig
    from imm.prompts import PromptConfig


def evaluate_on_run_tasks(model_path: Path, data: "DataConfig", prompt: "PromptConfig", e: "EvalConfig",
                          m: "ModelConfig", s: "SampleConfig", seed: int, out: Path) -> str:
    """Write `out` ({task: {domain, n, metrics}}) and the completions behind it beside it; the completions
    come from the engine `s.backend` names."""
    from imm.engines import open_engine
    from imm.evaluation.harness import evaluate
    from imm.layout import eval_samples
    from imm.outputs import atomic_write_json, atomic_write_jsonl
    from imm.prompts import prompter
    from imm.tasks.registry import get_task

    results, rows = {}, []
    with open_engine(model_path, s, m, batch_size=e.batch_size) as engine:
        for domain, names in (("id", data.id_tasks), ("ood", data.ood_tasks)):
            for name in names:
                task = get_task(name)
                problems = task.problems("test")[:e.limit]
                r = evaluate(engine, task, problems, max_new_tokens=e.max_new_tokens, seed=seed,
                             prompter=prompter(task, prompt, engine.tokenizer, asked=problems))
                results[task.name] = {"domain": domain, "n": r.n, "metrics": r.metrics}
                rows += r.rows
        if e.diversity_k:
            task = get_task(data.id_tasks[0])
            problems = task.problems("test")[:e.diversity_questions]
            r = evaluate(engine, task, problems, k=e.diversity_k, temperature=e.diversity_temperature,
                         max_new_tokens=e.max_new_tokens, seed=seed,
                         prompter=prompter(task, prompt, engine.tokenizer, asked=problems))
            results[f"{task.name}@diversity"] = {"domain": "id", "n": r.n, "metrics": r.metrics}
    atomic_write_jsonl(eval_samples(out), rows)
    atomic_write_json(out, results)
    id_acc = results[get_task(data.id_tasks[0]).name]["metrics"].get("strict-match")
    return f"{len(results)} task results, ID strict-match {id_acc:.3f}" if id_acc is not None else f"{len(results)} task results"
