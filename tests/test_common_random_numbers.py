"""Common random numbers: every model's sampled evaluation (the collapse figures) draws from the same seed,
so a difference in the figures is a difference of the weights, not of the dice. And the report says how
many examples D_t held, flagging an iteration where nothing was trained."""

import dataclasses
import json
import shutil
from pathlib import Path

from imm.config import load_config
from imm.layout import RunLayout, eval_samples, read_jsonl
from imm.evaluation.suite import evaluate_on_run_tasks
from imm.stage_runner import EVAL, stage_seed
from imm.report import compare
from imm.report.build import build, data_table
from imm.report.runs import load_runs
from imm.models import BUILTIN, resolve_model_path
from test_loop_wiring import ARMS, run
from test_report_build import make_run

COLLAPSE = ("unique-answers", "distinct-1", "distinct-2", "self-bleu", "entropy", "pass@4")


def test_the_loop_gives_every_evaluation_the_same_seed(tmp_path, monkeypatch):
    """θ0, then every arm's F_t and θ_t at t = 1, 2, 3: one seed for all (before: one per iteration)."""
    seeds = []
    import test_loop_wiring

    original = test_loop_wiring.Recorder.stages

    def stages(self):
        found = original(self)
        return dataclasses.replace(found, evaluate=lambda model, seed, out: (seeds.append(seed),
                                                                             found.evaluate(model, seed, out))[1])

    monkeypatch.setattr(test_loop_wiring.Recorder, "stages", stages)
    run(tmp_path, arms=ARMS)
    assert len(seeds) > 6 and set(seeds) == {stage_seed(0, 0, EVAL)}


def test_two_identical_checkpoints_give_identical_collapse_figures(tmp_path):
    """The same weights in two folders, evaluated with the loop's seed: every figure equal. The check can fail:
    with another seed (what iteration 2 used to get), the same weights give other samples."""
    cfg = load_config("smoke", (f"out_dir={tmp_path}", "eval.limit=4", "eval.diversity_questions=6",
                                "eval.diversity_k=4", "eval.max_new_tokens=40", "model.threads=1"))
    copies = [shutil.copytree(resolve_model_path(BUILTIN), tmp_path / name) for name in ("a", "b")]
    figures, texts = [], []
    for folder, seed in zip([*copies, copies[0]], [stage_seed(0, 0, EVAL)] * 2 + [stage_seed(0, 2, EVAL)]):
        out = tmp_path / f"{folder.name}-{seed}.json"
        evaluate_on_run_tasks(folder, cfg.data, cfg.prompt, cfg.eval, cfg.model, cfg.sampling, seed, out)
        figures.append(json.loads(out.read_text())["arith@diversity"]["metrics"])
        texts.append([r["completion"] for r in read_jsonl(eval_samples(out)) if r["sample"] != "greedy"])
    assert len(texts[0]) == 6 * 4  # the K samples of every diversity question are kept beside the greedy answers
    assert texts[0] == texts[1] and figures[0] == figures[1]
    assert {m: figures[0][m] for m in COLLAPSE} == {m: figures[1][m] for m in COLLAPSE}
    assert figures[2] != figures[0]  # other dice, same weights: other figures (what the report once called a change)


def test_the_report_counts_d_t_and_flags_an_iteration_with_nothing_trained(tmp_path):
    """Seed 0: D_1 held 5 examples in both arms; seed 1: imm's D_1 was empty (F_1 = θ0)."""
    roots = [make_run(tmp_path / f"seed{s}", seed=s) for s in (0, 1)]
    for root, kept in zip(roots, (5, 0)):
        for arm in ("self_improve", "imm"):
            stats = RunLayout(root).dataset_stats(arm, 1)
            stats.parent.mkdir(parents=True, exist_ok=True)
            stats.write_text(json.dumps({"samples": 8, "correct": kept, "questions_solved": kept,
                                         "kept": 5 if arm == "self_improve" else kept}))
    runs = load_runs(roots)
    rows = {(r[0].text, r[1].text): (r[2].text, r[4].text) for r in data_table(runs).rows}
    assert rows[("self_improve", "1")] == ("5, 5", "")
    assert rows[("imm", "1")] == ("5, 0", "nothing trained (D_t empty, F_t = its init) in seed 1")
    page = build(runs, figures=False)
    titles = [t.title for s in page.sections for t in s.tables]
    assert "Training data D_t per arm and iteration" in titles
    assert compare.arms(runs) == ["self_improve", "imm"]
