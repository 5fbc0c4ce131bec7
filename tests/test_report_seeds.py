"""A report over several training seeds: every interval counts the seed, and holds each seed's own difference."""

from imm.cli import main as cli
from imm.layout import RunLayout
from imm.report import compare
from imm.report.runs import load_runs
from test_report_build import make_run, write_evaluation

MERGED_PER_SEED = {  # imm θ_1's answers in seeds 1 and 2 (seed 0 keeps test_report_build's)
    1: {"arith": [1, 0, 1, 0], "arith_vocab": [1, 0, 1, 1]},
    2: {"arith": [1, 1, 1, 1], "arith_vocab": [0, 0, 1, 1]},
}


def three_seeds(tmp_path):
    roots = [make_run(tmp_path / f"seed{s}", seed=s) for s in (0, 1, 2)]
    for seed, answers in MERGED_PER_SEED.items():
        write_evaluation(RunLayout(roots[seed]).evaluation("imm", 1, "merged"), answers, "merged")
    return roots


def test_a_three_seed_report_holds_every_seeds_difference_in_every_interval(tmp_path):
    """imm − self_improve on arith_vocab is +75, +50, +25 in seeds 0, 1, 2: a t-interval over three seeds is at
    least 2.484 standard deviations wide each side and no seed lies further than 1.155 from the mean."""
    runs = load_runs(three_seeds(tmp_path))
    found = compare.arm_differences(runs) + [d for arm in ("self_improve", "imm")
                                            for d in compare.changes_from_theta0(runs, arm, 1)]
    assert len(found) == 6
    vocab = next(d for d in found if d.a == ("self_improve", 1) and d.task == "arith_vocab")
    assert [round(100 * v) for v in vocab.per_run] == [75, 50, 25]
    for d in found:
        lo, hi = d.interval
        assert all(lo <= v <= hi for v in d.per_run), (d.a, d.b, d.task, d.per_run, d.interval)


def test_the_page_names_the_method_and_the_seeds_a_claim_needs(tmp_path):
    roots = three_seeds(tmp_path)
    md = tmp_path / "t.md"
    assert cli(["report", *map(str, roots), "--out", str(tmp_path / "together"), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "Intervals: t-interval over the seeds, df = seeds − 1" in text
    assert "McNemar p per run" in text and "seeds a claim needs" in text
    assert "a claim needs ≥" in text.split("## Accuracy")[0]
