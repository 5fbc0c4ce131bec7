"""EAD with one vocabulary per report: expectation-adjusted distinct words (Liu et al., ACL 2022, "Rethinking
and Refining the Distinct Metric"), imm.evaluation.diversity.ead with n = 1.

EAD divides the distinct words D among N by the number N uniform draws from V words would give. The
reference fixes V for every system compared; a model's own vocabulary would give a more collapsed model a
smaller V and so a higher EAD. Here V is the union of the whitespace words of every diversity sample of every
model the report compares (θ0, the teacher, every arm's θ_t, in every run), the same for every row.
"""

from __future__ import annotations

from imm.evaluation import diversity
from imm.layout import GENERATOR, TEACHER, eval_samples, read_jsonl
from imm.report.runs import Run


def diversity_texts(run: Run, arm: str, t: int, model: str) -> list[list[str]]:
    """The sampled completions of one model's diversity evaluation, one list per question (K texts each)."""
    layout = run.layout
    path = eval_samples(layout.reference_evaluation(model) if model in (GENERATOR, TEACHER) else
                        layout.evaluation(arm, t, model))
    groups: dict[str, list[str]] = {}
    for row in read_jsonl(path) if path.exists() else []:
        if row.get("sample") != "greedy":
            groups.setdefault(str(row["id"]), []).append(row["completion"])
    return list(groups.values())


def vocabulary(samples: list[list[list[str]]]) -> int:
    """V: the different words in every model's samples together."""
    return diversity.vocabulary_size([texts for groups in samples for texts in groups])


def ead_1(groups: list[list[str]], v: int) -> float | None:
    """EAD of words per question, averaged over the questions (as distinct-n is)."""
    return diversity.mean_over_questions(groups, lambda texts: diversity.ead(texts, 1, v))
