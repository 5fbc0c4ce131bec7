"""The run's evaluation of one model: greedy accuracy on every in-domain and out-of-domain task, and
pass@K and the collapse figures on the in-domain test questions (docs/method.md §3)."""

from __future__ import annotations

from pathlib import Path

from imm.config import DataConfig, EvalConfig, ModelConfig, SampleConfig
from imm.errors import UserError
from imm.prompts import PromptConfig


def check_eval(e: EvalConfig) -> None:
    """The evaluation block, before any model is loaded."""
    if e.limit <= 0:
        raise UserError(f"eval.limit must be positive, got {e.limit}")
    if e.diversity_temperature <= 0 and e.diversity_k > 1:
        raise UserError(f"eval.diversity_temperature=0 is greedy: its {e.diversity_k} samples would be identical; "
                        f"set eval.diversity_k=0 or a temperature above 0")


def evaluate_on_run_tasks(model_path: Path, data: DataConfig, prompt: PromptConfig, e: EvalConfig,
                          m: ModelConfig, s: SampleConfig, seed: int, out: Path) -> str:
    """Write `out` ({task: {domain, n, metrics}}) and the completions behind it beside it; the completions
    come from the engine `s.backend` names."""
    from imm.engines import open_engine
    from imm.evaluation.harness import Asked, evaluate_many
    from imm.layout import eval_samples
    from imm.outputs import atomic_write_json, atomic_write_jsonl
    from imm.prompts import prompter
    from imm.tasks.registry import get_task

    domains = [(domain, get_task(name)) for domain, names in (("id", data.id_tasks), ("ood", data.ood_tasks))
               for name in names]
    train = get_task(data.train_task)  # shows the worked examples of a task that has no train split of its own
    with open_engine(model_path, s, m, batch_size=e.batch_size) as engine:
        asked = [Asked(task, problems, prompter(task, prompt, engine.tokenizer, asked=problems, fallback=train))
                 for _, task in domains for problems in [task.problems("test")[:e.limit]]]
        if e.diversity_k:
            task = get_task(data.id_tasks[0])
            problems = task.problems("test")[:e.diversity_questions]
            asked.append(Asked(task, problems, prompter(task, prompt, engine.tokenizer, asked=problems, fallback=train),
                               e.diversity_k, e.diversity_temperature))
        evaluated = evaluate_many(engine, asked, max_new_tokens=e.max_new_tokens, seed=seed)
    results, rows = {}, []
    for (domain, task), r in zip(domains, evaluated):
        results[task.name] = {"domain": domain, "n": r.n, "metrics": r.metrics}
        rows += r.rows
    if e.diversity_k:
        r = evaluated[-1]
        results[f"{r.task}@diversity"] = {"domain": "id", "n": r.n, "metrics": r.metrics}
        rows += [row for row in r.rows if row["sample"] != "greedy"]  # the K samples: the report's EAD reads them
    atomic_write_jsonl(eval_samples(out), rows)
    atomic_write_json(out, results)
    id_acc = results[get_task(data.id_tasks[0]).name]["metrics"].get("strict-match")
    return f"{len(results)} task results, ID strict-match {id_acc:.3f}" if id_acc is not None else f"{len(results)} task results"
