"""Evaluation: accuracy under the one answer checker, pass@K / maj@K, and collapse figures.

    from imm.engines import open_engine
    from imm.evaluation import evaluate
    with open_engine(path, SampleConfig(), ModelConfig(), batch_size=64) as engine:
        result = evaluate(engine, task, problems, k=8, temperature=1.0)
    result.metrics["strict-match"], result.metrics["pass@8"], result.metrics["self-bleu"]

`imm eval` (configure/main here) runs it over tasks from the command line; see `command`.
"""

from imm.evaluation.command import configure, main
from imm.evaluation.harness import EvalResult, evaluate, sample_metrics, score_completions

__all__ = ["EvalResult", "evaluate", "score_completions", "sample_metrics", "configure", "main"]
