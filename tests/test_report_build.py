"""`imm report` on hand-made run folders: the numbers, the claims in words, and every refusal.

The runs have 4 problems per task and two arms over one iteration:
    arith (ID)       θ0 [1,1,0,0] = 50%   self_improve F_1 [1,1,1,1] = 100%   imm θ_1 [1,1,1,0] = 75%
    arith_vocab      θ0 [1,1,1,0] = 75%   self_improve F_1 [0,0,1,0] = 25%    imm θ_1 [1,1,1,1] = 100%
so on arith_vocab self_improve forgets problems 0 and 1 (2 of 4 = 50%) and learns none, and imm − self_improve
is +75 points with 3 problems only imm solves and none only self_improve solves: McNemar p = 2·(½)³ = 0.25.
"""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from imm.cli import main as cli
from imm.config import AnalysisConfig, DataConfig, EvalConfig, RunConfig, per_seed, seeds_report_dir, to_dict
from imm.preflight import load_config
from imm.layout import RunLayout, eval_samples
from imm.report.summary import read_summary, write_summary
from imm.report.runs import load_run

ANSWERS = {  # (arm, t, model) -> task -> correct per problem
    (None, 0, "generator"): {"arith": [1, 1, 0, 0], "arith_vocab": [1, 1, 1, 0]},
    ("self_improve", 1, "finetuned"): {"arith": [1, 1, 1, 1], "arith_vocab": [0, 0, 1, 0]},
    ("imm", 1, "finetuned"): {"arith": [1, 1, 1, 1], "arith_vocab": [0, 0, 1, 0]},
    ("imm", 1, "merged"): {"arith": [1, 1, 1, 0], "arith_vocab": [1, 1, 1, 1]},
}
UNIQUE = {"generator": 1.5, "finetuned": 1.0, "merged": 1.25, "teacher": 2.0}
DISTILL = {  # the distillation arms' models and the teacher, for runs with all four arms
    (None, 0, "teacher"): {"arith": [1, 1, 1, 1], "arith_vocab": [1, 1, 1, 1]},
    ("distill", 1, "finetuned"): {"arith": [1, 1, 1, 0], "arith_vocab": [0, 1, 1, 0]},
    ("distill_imm", 1, "finetuned"): {"arith": [1, 1, 1, 0], "arith_vocab": [0, 1, 1, 0]},
    ("distill_imm", 1, "merged"): {"arith": [1, 1, 0, 0], "arith_vocab": [1, 1, 1, 0]},
}


def make_run(root: Path, seed: int = 0, distill: bool = False, **settings) -> Path:
    arms = ("self_improve", "imm", "distill", "distill_imm") if distill else ("self_improve", "imm")
    cfg = RunConfig(name=root.name, out_dir=str(root.parent), seed=seed, iterations=1, arms=arms,
                    data=DataConfig(id_tasks=("arith",), ood_tasks=("arith_vocab",)),
                    eval=EvalConfig(limit=4, diversity_k=2, diversity_questions=4),
                    analysis=AnalysisConfig(importance=("ablation",)))
    cfg = dataclasses.replace(cfg, **settings)
    layout = RunLayout(root)
    root.mkdir(parents=True)
    layout.config.write_text(yaml.safe_dump(to_dict(cfg)))
    for (arm, t, model), tasks in (ANSWERS | (DISTILL if distill else {})).items():
        path = layout.reference_evaluation(model) if t == 0 else layout.evaluation(arm, t, model)
        write_evaluation(path, tasks, model)
    trained = (("self_improve", ["finetuned"]), ("imm", ["finetuned", "merged"]))
    for arm, models in trained + ((("distill", ["finetuned"]), ("distill_imm", ["finetuned", "merged"])) if distill else ()):
        write_analysis(layout.analysis(arm, 1), models)
        (layout.finetuned(arm, 1)).mkdir(parents=True)
    timed = [("reference", 0, 2.0)] + [(arm, 1, 3.0 + i) for i, arm in enumerate(arms)]
    layout.timings.write_text("".join(json.dumps({"arm": arm, "iteration": t, "stage": "evaluate", "seconds": s}) + "\n"
                                      for arm, t, s in timed))
    return root


def write_evaluation(path: Path, tasks: dict, model: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    results, rows = {}, []
    for task, right in tasks.items():
        results[task] = {"domain": "id" if task == "arith" else "ood", "n": 4,
                         "metrics": {"strict-match": sum(right) / 4, "flexible-extract": sum(right) / 4}}
        rows += [{"task": task, "id": f"{task}-{i}", "sample": "greedy", "prompt": f"Q{i}?", "completion": f"The answer is {i}.",
                  "gold": str(i), "extracted": str(i) if ok else "7", "correct": bool(ok)} for i, ok in enumerate(right)]
    results["arith@diversity"] = {"domain": "id", "n": 4, "metrics": {"pass@2": 0.75, "unique-answers": UNIQUE[model],
                                                                      "distinct-2": 0.5, "self-bleu": 0.9, "entropy": 0.01}}
    path.write_text(json.dumps(results))
    eval_samples(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_analysis(folder: Path, models: list[str]) -> None:
    """Block updates 4, 3, 2, 1 against importance 1, 2, 3, 4: ρ = −1, exact permutation p = 2/24."""
    folder.mkdir(parents=True)
    lines = ["model,layer,module,n_params,delta_l2,base_l2,relative,step_l2,cos_prev,pullback"]
    lines += [f"{m},{b},all,10,{4 - b},100,{(4 - b) / 100},0,," for m in models for b in range(4)]
    (folder / "layers.csv").write_text("\n".join(lines) + "\n")
    (folder / "importance.csv").write_text("model,layer,ablation_drop,skipped_accuracy,gradient_l2\n"
                                           + "".join(f"base,{b},{b + 1},0.5,\n" for b in range(4)))
    (folder / "superficiality.json").write_text(json.dumps({"figures": [
        {"model": m, "importance": "ablation", "critical_share": 1 / 30, "uniform_share": 0.25} for m in models]}))


def test_markdown_tables_carry_the_hand_derived_numbers(tmp_path):
    run = make_run(tmp_path / "seed0")
    md = tmp_path / "tables.md"
    assert cli(["report", str(run), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| θ0 | 0 | 50.0 | 75.0 | 75.0 |" in text
    assert "| self_improve F_t | 1 | 100.0 | 25.0 | 25.0 |" in text
    assert "| imm θ_t (merged) | 1 | 75.0 | 100.0 | 100.0 |" in text
    assert "| arith_vocab | +75.0 |" in text and "| 0.25 | +75.0 | 0.25 | 3 / 0 | - | - |" in text
    assert "| self_improve | 1 | 0.0 / 50.0 | 50.0 / 0.0 |" in text  # arith: learned 2 of 4; vocab: forgot 2
    assert "| self_improve | 1 | F_t | ablation | -1.00 | 0.083 | 3.3 (uniform 25.0) |" in text
    assert "arith_vocab problem arith_vocab-0 (gold 0): θ0: ✓ 0; self_improve t=1: ✗ 7; imm t=1: ✓ 0" in text


def test_distillation_arms_are_compared_with_each_other_and_the_teacher_is_a_reference(tmp_path):
    """distill_imm − distill on arith_vocab: [1,1,1,0] vs [0,1,1,0], one problem gained: +25 points."""
    run = make_run(tmp_path / "seed0", distill=True)
    md = tmp_path / "t.md"
    assert cli(["report", str(run), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| teacher | 0 | 100.0 | 100.0 | 100.0 |" in text
    assert "**distill_imm − distill at t = 1 (B = distill_imm, A = distill)**" in text
    assert "| arith_vocab | +25.0 |" in text.split("distill_imm − distill")[1]
    assert (RunLayout(run).report / "accuracy.png").is_file()


def test_the_page_shows_summary_csv_and_its_figures_exist(tmp_path):
    run = make_run(tmp_path / "seed0")
    assert cli(["report", str(run)]) == 0
    folder = RunLayout(run).report
    page = (folder / "index.html").read_text()
    write_summary(load_run(run).cfg)
    values = {"|".join((r.arm, str(r.iteration), r.model, r.task, r.metric)): r.value
              for r in read_summary(RunLayout(run).summary)}
    shown = re.findall(r'<td data-key="([^"]+)">([^<]*)</td>', page)
    assert len(shown) >= 12
    for key, text in shown:
        scale, digits = (1.0, 2) if key.endswith("unique-answers") else (100.0, 1) if "match" in key or "pass@" in key else (1.0, None)
        if digits is not None:
            assert text == f"{scale * values[key]:.{digits}f}", key
    for name in re.findall(r'<img src="([^"]+)"', page):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page  # opens from disk


def test_claims_in_words_follow_the_intervals(tmp_path):
    """4 problems per task. self_improve's ID gain (+50: two problems gained, two alike) resamples to 0 with
    probability (2/4)^4 = 6.25% > 2.5%, so its interval reaches 0 and no direction is claimed. imm −
    self_improve on arith_vocab (+75: three gained) resamples to 0 with (1/4)^4 = 0.4% < 2.5%: 'higher'."""
    run = make_run(tmp_path / "seed0")
    md = tmp_path / "t.md"
    cli(["report", str(run), "--markdown", str(md)])
    summary = md.read_text().split("## Accuracy")[0]
    assert "**self_improve** after 1 iteration, against θ0: arith (ID): no clear difference, +50.0 pts" in summary
    assert "at t = 1: arith: no clear difference, -25.0 pts (95% interval -75.0 to +0.0)" in summary
    assert "arith_vocab higher: +75.0 pts (95% interval +25.0 to +100.0)" in summary
    assert "conditional on this one trained model: the page makes no claim about training randomness" in summary


def test_seeds_are_reported_together_with_their_spread(tmp_path):
    """Two seeds with the same answers: imm − self_improve on arith_vocab is b − a = [1, 1, 0, 1] in both, so
    var(d_s) = 0, c = [1, 1, 0, 1] with var 1/4, /P = 1/16: se = 1/4, t = 0.75/0.25 = 3 with df = 1:
    p = 1 − 2·atan(3)/π = 0.205. The interval ±12.706·0.25 is cut to [−1, 1]. A claim would need
    t(0.975, n − 1) < 3: n = 5 (t(4) = 2.776, t(3) = 3.182). McNemar per run: 2·(½)³ = 0.25."""
    runs = [make_run(tmp_path / f"seed{s}", seed=s) for s in (0, 1)]
    md = tmp_path / "t.md"
    assert cli(["report", *map(str, runs), "--out", str(tmp_path / "together"), "--markdown", str(md)]) == 0
    assert "| θ0 | 0 | 50.0 (50.0–50.0) |" in md.read_text()
    assert "| arith_vocab | +75.0 | -100.0 to +100.0 | 0.205 | +75.0, +75.0 | 0.25, 0.25 | 6 / 0 | 2/2 | ≥ 5 |" in md.read_text()


def test_some_arms_of_wider_runs_join_the_same_seeds_runs(tmp_path):
    """A folder with more arms and one more importance measure (as `imm compare` writes) is another experiment;
    read for self_improve and imm only, it is the two-seed case above: the same row, digit for digit."""
    wide = make_run(tmp_path / "seed0", distill=True, analysis=AnalysisConfig(importance=("ablation", "gradient")))
    plain = make_run(tmp_path / "seed1", seed=1)
    md = tmp_path / "t.md"
    assert cli(["report", str(wide), str(plain), "--out", str(tmp_path / "o")]) == 2
    assert cli(["report", str(wide), str(plain), "--arms", "self_improve,imm", "--out", str(tmp_path / "o"),
                "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "| arith_vocab | +75.0 | -100.0 to +100.0 | 0.205 | +75.0, +75.0 | 0.25, 0.25 | 6 / 0 | 2/2 | ≥ 5 |" in text
    assert "distill" not in text and "teacher" not in text and "gradient" not in text
    assert "| self_improve | 1 | F_t | ablation | -1.00 (-1.00–-1.00) | 0.083, 0.083 |" in text
    assert "| stage | reference | self_improve | imm |\n" in text and "| evaluate | 2 (2–2) | 3 (3–3) | 4 (4–4) |" in text


@pytest.mark.parametrize("arms", ["self_improve,distill", "imm,imm"])
def test_arms_every_run_lacks_or_lists_twice_are_refused(tmp_path, capsys, arms):
    runs = [make_run(tmp_path / "seed0", distill=True), make_run(tmp_path / "seed1", seed=1)]
    assert cli(["report", *map(str, runs), "--arms", arms, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("has no arm 'distill'" in err or "lists an arm twice" in err)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["missing", "no-config", "several-without-out", "other-experiment", "same-seed",
                                  "user-folder", "markdown-exists"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    a = make_run(tmp_path / "a")
    args = {
        "missing": lambda: [str(tmp_path / "nope")],
        "no-config": lambda: [str(tmp_path)],
        "several-without-out": lambda: [str(a), str(make_run(tmp_path / "b", seed=1))],
        "other-experiment": lambda: [str(a), str(make_run(tmp_path / "b", seed=1, iterations=2)), "--out", str(tmp_path / "o")],
        "same-seed": lambda: [str(a), str(make_run(tmp_path / "b")), "--out", str(tmp_path / "o")],
        "user-folder": lambda: [str(a), "--out", str(tmp_path / "mine")],
        "markdown-exists": lambda: [str(a), "--markdown", str(tmp_path / "old.md")],
    }[case]()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "old.md").write_text("keep")
    assert cli(["report", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imm report: error:") and "\n" not in err
    assert not RunLayout(a).report.exists() and not (tmp_path / "o").exists()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and (tmp_path / "old.md").read_text() == "keep"


def test_a_report_is_replaced_only_where_imm_owns_it(tmp_path):
    run = make_run(tmp_path / "a")
    assert cli(["report", str(run)]) == 0 and cli(["report", str(run)]) == 0  # the run's own report: refreshed
    assert cli(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert cli(["report", str(run), "--out", str(tmp_path / "r")]) == 2  # a chosen folder: only with --overwrite
    assert cli(["report", str(run), "--out", str(tmp_path / "r"), "--overwrite"]) == 0


def test_seeds_run_in_sibling_folders_and_are_reported_beside_them(tmp_path):
    cfg = load_config("smoke", (f"out_dir={tmp_path}", "seeds=[0,2]"))
    runs = per_seed(cfg)
    assert [(c.seed, c.seeds, c.run_dir) for c in runs] == [(0, (), tmp_path / "smoke-seed0"), (2, (), tmp_path / "smoke-seed2")]
    assert seeds_report_dir(cfg) == tmp_path / "smoke-seeds"
    assert per_seed(load_config("smoke")) == [load_config("smoke")]
