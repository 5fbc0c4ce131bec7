"""The arrows of docs/method.md §2 for every arm, with stand-in stages that record where each output came from.

Each stand-in writes its output with its provenance: samples name the model that wrote them, D_t the
samples' writer, F_t its init, θ_t the two models it merged. Changing any arrow of the loop (G = F_t
in a merging arm, sampling from G in a distillation arm, merging with θ_{t−1} instead of θ0, ...)
changes a provenance below. What two arms share is computed once and linked."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from imm.config import from_dict, RunConfig
from imm.layout import RunLayout
from imm.loop import Stages, run_loop

ARMS = ["self_improve", "imm", "distill", "distill_imm"]


def checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


class Recorder:
    """Stand-in stages: files carry their provenance, `calls` lists (stage, output) in order."""

    def __init__(self, layout: RunLayout, base: Path, teacher: Path):
        self.layout, self.calls = layout, []
        self.names = {base: "θ0", teacher: "teacher"}

    def name(self, model: Path) -> str:
        if model in self.names:
            return self.names[model]
        if model.parent.name == "second":  # model_stock's second F_t: arms/<arm>/iter_<t>/second/finetuned
            return "F′" + self.name(model.parent.parent / "finetuned")[1:]
        arm, t = model.parent.parent.name, int(model.parent.name.removeprefix("iter_"))
        return f"{'F' if model.name == 'finetuned' else 'θ'}[{arm},{t}]"

    def write(self, stage: str, out: Path, record: dict) -> str:
        self.calls.append((stage, out))
        target = out / "model.json" if stage in ("finetune", "merge") else out
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record))
        return ""

    def stages(self) -> Stages:
        read = lambda path: json.loads(Path(path).read_text())  # noqa: E731
        return Stages(
            sample=lambda writer, seed, out: self.write("sample", out, {"from": self.name(writer)}),
            verify=lambda samples, stats, out: (stats.write_text("{}"), self.write("verify", out, read(samples)))[1],
            finetune=lambda init, data, seed, stats, out: (stats.write_text("{}"), self.write(  # as F_t's stats and log: no mkdir
                "finetune", out, {"init": self.name(init), "data_from": read(data)["from"]}))[1],
            merge=lambda arm, base, ft, seed, out, init: self.write("merge", out, {
                "base": self.name(base), "finetuned": " + ".join(map(self.name, ft)), "start": self.name(init)}),
            evaluate=lambda model, seed, out: self.write("evaluate", out, {}),
            analyse=lambda arm, t: self.write("analyse", self.layout.analysis(arm, t) / "done", {}),
        )


def run(tmp_path, side_by_side=False, report=lambda final=False: None, **settings):
    base, teacher = checkpoint(tmp_path / "base"), checkpoint(tmp_path / "teacher")
    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path / "runs"), "iterations": 3, "arms": ARMS,
                                "model": {"base": str(base), "teacher": str(teacher)}, **settings})
    layout = RunLayout(cfg.run_dir)
    recorder = Recorder(layout, base.resolve(), teacher.resolve())
    run_loop(cfg, stages=dataclasses.replace(recorder.stages(), side_by_side=side_by_side, report=report))
    return layout, recorder


def provenance(layout: RunLayout, arm: str, t: int) -> dict:
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    found = {"S": read(layout.samples(arm, t))["from"], "D": read(layout.dataset(arm, t))["from"],
             "F": read(layout.finetuned(arm, t) / "model.json")}
    if layout.merged(arm, t).exists():
        found["θ"] = read(layout.merged(arm, t) / "model.json")
    return found


def expected(arm: str, t: int) -> dict:
    """docs/method.md §2 by hand: G = θ0 at t = 1, then the arm's θ_{t−1} (F_{t−1} where it does not merge)."""
    merges = arm in ("imm", "distill_imm")
    previous = "θ0" if t == 1 else f"{'θ' if merges else 'F'}[{arm},{t - 1}]"
    writer = "teacher" if arm.startswith("distill") else previous
    found = {"S": writer, "D": writer, "F": {"init": previous, "data_from": writer}}
    if merges:
        found["θ"] = {"base": "θ0", "finetuned": f"F[{arm},{t}]", "start": previous}
    return found


@pytest.mark.parametrize("arm", ARMS)
def test_every_arrow_of_every_arm_and_iteration(tmp_path, arm):
    layout, _ = run(tmp_path)
    for t in (1, 2, 3):
        assert provenance(layout, arm, t) == expected(arm, t), (arm, t)


def test_fine_tunes_trained_at_once_have_the_arrows_and_sharing_of_one_after_the_other(tmp_path):
    """Side by side (forked processes), each iteration's F_t that need training train at once: at t = 1 the
    generator arms' shared F_1 once beside the teacher arms' F_1; every arrow as before, F_1 still a link."""
    layout, _ = run(tmp_path, side_by_side=True)
    for arm in ARMS:
        for t in (1, 2, 3):
            assert provenance(layout, arm, t) == expected(arm, t), (arm, t)
    timings = [json.loads(line) for line in layout.timings.read_text().splitlines()]
    at_once = {(r["iteration"], r["arm"]): r["at_once"] for r in timings if r["stage"] == "finetune"}
    lanes = min(4, torch.get_num_threads())  # as many at once as torch has threads
    assert at_once == {(1, "self_improve"): min(2, lanes), (1, "distill"): min(2, lanes),
                       **{(t, arm): lanes for t in (2, 3) for arm in ARMS}}
    assert layout.finetuned("imm", 1).joinpath("model.json").stat().st_ino == \
        layout.finetuned("self_improve", 1).joinpath("model.json").stat().st_ino


def test_the_report_is_refreshed_after_each_iteration_but_the_last_then_once_at_the_end(tmp_path):
    refreshes = []
    run(tmp_path, report=lambda final=False: refreshes.append(final))
    assert refreshes == [False, False, True]  # 3 iterations: after t = 1 and 2, then the run's final refresh


def test_shared_work_is_computed_once(tmp_path):
    """t = 1: the generator arms share S_1, D_1, F_1 and its evaluation (all from θ0); the teacher arms
    share S_t and D_t at every t, and F_1. θ0 and the teacher are evaluated once."""
    layout, recorder = run(tmp_path)
    done = {(stage, out.relative_to(layout.root).parts[1:3]) for stage, out in recorder.calls if "arms" in out.parts}
    samples = sorted(where for stage, where in done if stage == "sample")
    assert samples == [("distill", "iter_1"), ("distill", "iter_2"), ("distill", "iter_3"), ("imm", "iter_2"),
                       ("imm", "iter_3"), ("self_improve", "iter_1"), ("self_improve", "iter_2"),
                       ("self_improve", "iter_3")]
    finetunes = sorted(where for stage, where in done if stage == "finetune")
    assert finetunes == [("distill", f"iter_{t}") for t in (1, 2, 3)] + [("distill_imm", "iter_2"), ("distill_imm", "iter_3")] \
        + [("imm", "iter_2"), ("imm", "iter_3")] + [("self_improve", f"iter_{t}") for t in (1, 2, 3)]
    references = [out.name for stage, out in recorder.calls if stage == "evaluate" and "iter_0" in out.parts]
    assert references == ["generator.json", "teacher.json"]
    assert layout.finetuned("imm", 1).joinpath("model.json").stat().st_ino == \
        layout.finetuned("self_improve", 1).joinpath("model.json").stat().st_ino  # a link, not a copy


def test_fine_tuning_from_theta0_shares_the_teacher_arms_every_f_t(tmp_path):
    """finetune.init_from=base: F_t = fine-tune(θ0, D_t); the teacher arms' D_t match, so their F_t do."""
    layout, recorder = run(tmp_path, finetune={"init_from": "base"})
    assert not [out for stage, out in recorder.calls if stage == "finetune" and "distill_imm" in out.parts]
    for t in (1, 2, 3):
        assert provenance(layout, "imm", t)["F"] == {"init": "θ0", "data_from": "θ0" if t == 1 else f"θ[imm,{t - 1}]"}


def test_a_resumed_loop_runs_nothing_twice(tmp_path):
    layout, first = run(tmp_path)
    calls = len(first.calls)
    recorder = Recorder(layout, (tmp_path / "base").resolve(), (tmp_path / "teacher").resolve())
    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path / "runs"), "iterations": 3, "arms": ARMS,
                                "model": {"base": str(tmp_path / "base"), "teacher": str(tmp_path / "teacher")}})
    run_loop(cfg, stages=recorder.stages())
    assert calls > 40 and recorder.calls == []


def test_a_merging_arm_of_the_run_merges_two_fine_tunes_for_model_stock_and_evaluates_only_theta(tmp_path):
    """merge_arms adds `stock` (model_stock): it samples from its own θ_{t−1}, trains F_t and a second F′_t from
    the same init and data, and merges θ0 with both, measuring from their start θ_{t−1}; F_1 and its evaluation are
    self_improve's (linked), and from t = 2 on only θ_t is evaluated."""
    layout, recorder = run(tmp_path, arms=["self_improve", "stock"], merge_arms={"stock": {"method": "model_stock"}})
    for t in (1, 2, 3):
        previous = "θ0" if t == 1 else f"θ[stock,{t - 1}]"
        assert provenance(layout, "stock", t) == {"S": previous, "D": previous, "F": {"init": previous, "data_from": previous},
                                                  "θ": {"base": "θ0", "finetuned": f"F[stock,{t}] + F′[stock,{t}]",
                                                        "start": previous}}
        second = json.loads((layout.second_finetuned("stock", t) / "model.json").read_text())
        assert second == {"init": previous, "data_from": previous}
    ran = [out.relative_to(layout.iteration("stock", 1).parent).as_posix() for stage, out in recorder.calls
           if stage in ("finetune", "evaluate") and "stock" in out.parts]
    assert ran == ["iter_1/second/finetuned", "iter_1/eval/merged.json",
                   "iter_2/finetuned", "iter_2/second/finetuned", "iter_2/eval/merged.json",
                   "iter_3/finetuned", "iter_3/second/finetuned", "iter_3/eval/merged.json"]
