"""`imm compare`: operators × seeds on one experiment, as merging arms of one run folder per seed.

The fast tests check the comparison's config, its refusals and the operators table. The slow one runs every
operator for one iteration of the shipped smoke config: iteration 1 is shared, each arm merges with its own
operator, the report leads with the operators table, and the same command again resumes without recomputing
anything (later iterations' wiring: test_loop_wiring)."""

from pathlib import Path

import pytest

from imm.cli import main
from imm.comparison import OPERATORS, comparison_config
from imm.preflight import load_config
from imm.errors import UserError


def test_the_comparison_is_the_experiment_with_one_merging_arm_per_operator():
    cfg = comparison_config(load_config("smoke", ("seeds=[3,4]",)), ("lines", "model_stock"))
    assert cfg.name == "smoke-compare" and cfg.arms == ("self_improve", "imm", "lines", "model_stock")
    assert cfg.merge_arms == {"lines": OPERATORS["lines"], "model_stock": OPERATORS["model_stock"]}
    assert cfg.seeds == (3, 4) and cfg.analysis.importance == ("ablation", "gradient", "influence")
    every = comparison_config(load_config("smoke"))
    assert every.arms[2:] == tuple(OPERATORS) and every.seeds == (0,)


def test_a_config_of_its_own_operators_is_compared_instead():
    cfg = comparison_config(load_config("smoke", ("merge_arms={soft: {method: wise_ft, weight: 0.2}}",)))
    assert cfg.arms == ("self_improve", "imm", "soft") and cfg.merge_block("soft").weight == 0.2


@pytest.mark.parametrize("operators, message", [
    (("lines", "nope"), "unknown operator 'nope'"),
    (("lines", "lines"), "lists an operator twice"),
])
def test_bad_operator_lists_are_refused(operators, message):
    with pytest.raises(UserError, match=message):
        comparison_config(load_config("smoke"), operators)


def test_a_user_folder_where_the_report_goes_stops_it_before_any_work(tmp_path, capsys):
    (tmp_path / "smoke-compare-seeds").mkdir()
    (tmp_path / "smoke-compare-seeds" / "notes.txt").write_text("mine")
    assert main(["compare", "--config", "smoke", f"out_dir={tmp_path}"]) == 2
    assert "smoke-compare-seeds" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke-compare-seeds"]
    assert (tmp_path / "smoke-compare-seeds" / "notes.txt").read_text() == "mine"


def test_the_operators_table_carries_the_hand_derived_numbers(tmp_path):
    """test_report_build's run (4 problems per task, t = 1) plus a merging arm `soft` (wise_ft) whose θ_1 answers
    arith [1,1,0,1] (75%) and arith_vocab [1,1,0,0] (50%). Against θ0 (arith [1,1,0,0], vocab [1,1,1,0]) soft
    learns arith problem 3 (+25.0) and forgets vocab problem 2 (−25.0, forgotten 25.0 / learned 0.0); against
    imm's θ_1 (arith [1,1,1,0], vocab [1,1,1,1]) it gains 1 and loses 1 on arith (+0.0) and loses 2 on vocab
    (−50.0). self_improve's F_1 (arith [1,1,1,1], vocab [0,0,1,0]): +50.0 and −50.0 against θ0, +25.0 and
    −75.0 against imm. Its layers: updates 1..4 against importance 4..1, ρ = −1.00, critical share 1/30 = 3.3%."""
    from test_report_build import make_run, write_analysis, write_evaluation

    from imm.config import MergeConfig
    from imm.layout import RunLayout

    run = make_run(tmp_path / "seed0", arms=("self_improve", "imm", "soft"), merge_arms={"soft": MergeConfig(method="wise_ft")})
    layout = RunLayout(run)
    write_evaluation(layout.evaluation("soft", 1, "merged"), {"arith": [1, 1, 0, 1], "arith_vocab": [1, 1, 0, 0]}, "merged")
    write_analysis(layout.analysis("soft", 1), ["merged"])
    layout.finetuned("soft", 1).mkdir(parents=True)
    md = tmp_path / "tables.md"
    assert main(["report", str(run), "--markdown", str(md)]) == 0
    text = md.read_text()
    cells = lambda arm: next(line for line in text.splitlines() if line.startswith(f"| {arm} | ")).split(" | ")  # noqa: E731
    soft, plain, imm = cells("soft"), cells("self_improve"), cells("imm")
    assert soft[1:3] == ["wise_ft (λ 0.5)", "75.0"] and soft[3].startswith("+25.0 [") and soft[4].startswith("+0.0 [")
    assert soft[5] == "50.0" and soft[6].startswith("-25.0 [") and soft[7].startswith("-50.0 [")
    assert plain[1:3] == ["none (θ_t = F_t)", "100.0"] and plain[3].startswith("+50.0 [") and plain[4].startswith("+25.0 [")
    assert plain[6].startswith("-50.0 [") and plain[7].startswith("-75.0 [") and imm[4] == "-"
    detail = [line for line in text.splitlines() if line.startswith("| soft | ")][1]
    assert detail.startswith("| soft | 0.0 / 25.0 | 25.0 / 0.0 | 75.0 | 1.25 |") and detail.endswith("| -1.00; 3.3 |")
    # each merging arm's summary line against self_improve is its own: vocab soft [1,1,0,0] − F_1 [0,0,1,0] = +25.0,
    # imm [1,1,1,1] − F_1 = +75.0
    line = lambda arm: next(x for x in text.splitlines() if x.startswith(f"- **{arm} vs self_improve** at t = 1"))  # noqa: E731
    assert "arith_vocab" in line("soft") and "+25.0 pts" in line("soft").split("arith_vocab")[1]
    assert "+75.0 pts" in line("imm").split("arith_vocab")[1]


SMALL = ("iterations=1", "model.threads=1", "eval.limit=6", "eval.diversity_questions=4", "data.train_questions=24")


@pytest.mark.slow
def test_every_operator_runs_in_the_loop_and_the_comparison_resumes(tmp_path, capsys):
    args = ["compare", "--config", "smoke", f"out_dir={tmp_path}", *SMALL]
    assert main(args) == 0
    run = tmp_path / "smoke-compare-seed0"
    arms = ("imm", *OPERATORS)
    for arm in arms:
        assert (run / "arms" / arm / "iter_1" / "merged" / "model.safetensors").exists(), arm
    assert (run / "arms" / "model_stock" / "iter_1" / "second" / "finetuned" / "model.safetensors").exists()
    shared = [run / "arms" / a / "iter_1" / "finetuned" / "model.safetensors" for a in ("self_improve", *arms)]
    assert len({p.stat().st_ino for p in shared}) == 1, "iteration 1's fine-tune is computed once and linked"
    merged = {a: (run / "arms" / a / "iter_1" / "merged" / "model.safetensors").read_bytes() for a in arms}
    assert len(set(merged.values())) == len(arms), "each operator makes its own θ_1"
    assert (run / "analysis_cache").is_dir() and any(p.name.startswith("influence-") for p in (run / "analysis_cache").iterdir())
    report = tmp_path / "smoke-compare-seeds"
    tables = (report / "results.md").read_text()
    assert "## Merge-back operators at t = 1" in tables and (report / "index.html").exists()
    for arm in ("self_improve", *arms):
        assert f"| {arm} |" in tables
    printed = capsys.readouterr().out
    assert "Merge-back operators" in printed
    assert main(args) == 0  # the same command again: every stage was done before
    again = capsys.readouterr().out
    stages = [line for line in again.splitlines() if line.startswith("[")]
    assert stages and all("done before" in line for line in stages), [l for l in stages if "done before" not in l]
    assert (report / "results.md").read_text() == tables
