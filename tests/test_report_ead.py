"""EAD on the report's page: one vocabulary V for every model compared (Liu et al. 2022)."""

import json

from imm.evaluation.diversity import ead
from imm.layout import RunLayout, eval_samples
from imm.report.document import collapse_table
from imm.report.runs import load_runs
from test_report_build import make_run

SAMPLES = {"theta0": ["a b", "a b"], "imm": ["a c", "d e"]}  # one question, K = 2 samples


def add_samples(path, texts):
    with open(eval_samples(path), "a") as f:
        for j, text in enumerate(texts):
            f.write(json.dumps({"task": "arith", "id": "arith-0", "sample": j, "completion": text}) + "\n")


def test_every_row_uses_the_union_vocabulary_of_every_model_on_the_page(tmp_path):
    """V = {a, b, c, d, e} = 5 for both. θ0: 2 distinct words of N = 4, expected 5·(1 − (4/5)^4) = 2.952, EAD
    0.678; imm: 4 distinct, EAD 1.355. With θ0's own V = 2 its EAD would be 2 / (2·(1 − ½^4)) = 1.067: a
    collapsed model's smaller vocabulary would flatter it."""
    root = make_run(tmp_path / "seed0")
    layout = RunLayout(root)
    add_samples(layout.reference_evaluation("generator"), SAMPLES["theta0"])
    add_samples(layout.evaluation("imm", 1, "merged"), SAMPLES["imm"])
    table = collapse_table(load_runs([root]))
    column = table.header.index("EAD")
    cells = {row[0].text: row[column].text for row in table.rows}
    assert cells == {"θ0": "0.678", "self_improve F_t": "-", "imm θ_t (merged)": "1.355"}
    assert "V = 5 words" in table.note
    assert round(ead(SAMPLES["theta0"], 1, 2), 3) == 1.067
