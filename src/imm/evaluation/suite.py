"""The run's evaluation of one model: greedy accuracy on every in-domain and out-of-domain task, and
pass@K and the collapse figures on the in-domain test questions (METHOD.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imm.config import DataConfig, EvalConfig, ModelConfig
    from imm.prompts import PromptConfig


def evaluate_on_run_tasks(model_path: Path, data: "DataConfig", prompt: "PromptConfig", e: "EvalConfig",
                          m: "ModelConfig", seed: int, out: Path) -> str:
    """Write `out` ({task: {domain, n, metrics}}) and the completions behind it beside it."""
    from imm.models import load_model
    from imm.evaluation.harness import evaluate
    from imm.layout import eval_samples
    from imm.outputs import atomic_write_json, atomic_write_jsonl
    from imm.prompts import prompter
    from imm.tasks.registry import get_task

    model, tokenizer = load_model(model_path, device=m.device, dtype=m.dtype)
    results, rows = {}, []
    for domain, names in (("id", data.id_tasks), ("ood", data.ood_tasks)):
        for name in names:
            task = get_task(name)
            problems = task.problems("test")[:e.limit]
            r = evaluate(model, tokenizer, task, problems, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                         seed=seed, prompter=prompter(task, prompt, tokenizer, asked=problems))
            results[task.name] = {"domain": domain, "n": r.n, "metrics": r.metrics}
            rows += r.rows
    if e.diversity_k:
        task = get_task(data.id_tasks[0])
        problems = task.problems("test")[:e.diversity_questions]
        r = evaluate(model, tokenizer, task, problems, k=e.diversity_k, temperature=e.diversity_temperature,
                     max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, seed=seed,
                     prompter=prompter(task, prompt, tokenizer, asked=problems))
        results[f"{task.name}@diversity"] = {"domain": "id", "n": r.n, "metrics": r.metrics}
    atomic_write_jsonl(eval_samples(out), rows)
    atomic_write_json(out, results)
    id_acc = results[get_task(data.id_tasks[0]).name]["metrics"].get("strict-match")
    return f"{len(results)} task results, ID strict-match {id_acc:.3f}" if id_acc is not None else f"{len(results)} task results"
