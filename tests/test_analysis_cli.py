"""`imm analyze` end to end on a hand-built run folder of tiny checkpoints with known updates."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from transformers import LlamaForCausalLM

from imm.analysis.run_folder import analyze_iteration
from imm.cli import main
from imm.tasks.registry import get_task
from imm.world.tokenizer import train_tokenizer

from tiny import tiny_llama

Q_PROJ = "model.layers.1.self_attn.q_proj.weight"  # (32, 32): adding 1/8 everywhere moves it by exactly 4
FAST = ["--probe-size", "2", "--max-new-tokens", "4", "--device", "cpu"]


def save(model, tokenizer, folder, q_shift: float = 0.0):
    """Save `model` with `q_shift` added to block 1's q_proj (weights are multiples of 2^-10: exact in float32)."""
    copy = LlamaForCausalLM(model.config)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        dict(copy.named_parameters())[Q_PROJ].add_(q_shift)
    copy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """θ0; imm arm: F_1 = θ0 + Δ, θ_1 = θ0 + Δ/2, F_2 = θ0 + Δ, θ_2 = θ0 + Δ/2; self_improve arm: F_1 = θ0 + Δ.
    Δ = 1/8 on every entry of block 1's q_proj, ‖Δ‖ = 4."""
    root = tmp_path_factory.mktemp("run")
    task = get_task("arith")
    tokenizer = train_tokenizer([task.prompt(p) + " " + p.solution for p in task.problems("test")[:200]], 300)
    base = tiny_llama(tokenizer=tokenizer, layers=4, grid=2**-10, bos_token_id=None)
    save(base, tokenizer, root / "base")
    for t in (1, 2):
        save(base, tokenizer, root / f"arms/imm/iter_{t}/finetuned", 1 / 8)
        save(base, tokenizer, root / f"arms/imm/iter_{t}/merged", 1 / 16)
    save(base, tokenizer, root / "arms/self_improve/iter_1/finetuned", 1 / 8)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"base": str(root / "base")}}))
    return root


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_analyze_run_writes_every_iteration_and_arm(run_dir, capsys):
    """Merged rows at t=1: delta ‖Δ/2‖ = 2, step from θ0 = 2, pullback 1/2, no previous task vector. At t=2 the
    previous model is θ_1 = θ0 + Δ/2: merged step 0 and cos 1; fine-tuned step ‖Δ − Δ/2‖ = 2.
    Blocks 0, 2, 3 did not move, so block 1 holds the whole update: its share is 1 if critical, else 0."""
    assert main(["analyze", str(run_dir), *FAST]) == 0
    for arm, t in (("imm", 1), ("imm", 2), ("self_improve", 1)):
        assert sorted(p.name for p in (run_dir / f"arms/{arm}/iter_{t}/analysis").iterdir()) == [
            "imm_output.json", "importance.csv", "layers.csv", "superficiality.json"]
    rows = read_csv(run_dir / "arms/imm/iter_1/analysis/layers.csv")
    merged = next(r for r in rows if (r["model"], r["layer"], r["module"]) == ("merged", "1", "self_attn.q_proj"))
    assert (merged["delta_l2"], merged["step_l2"], merged["cos_prev"], merged["pullback"]) == ("2.0", "2.0", "", "0.5")
    rows2 = read_csv(run_dir / "arms/imm/iter_2/analysis/layers.csv")
    m2 = next(r for r in rows2 if (r["model"], r["layer"], r["module"]) == ("merged", "1", "all"))
    f2 = next(r for r in rows2 if (r["model"], r["layer"], r["module"]) == ("finetuned", "1", "all"))
    assert (m2["step_l2"], m2["cos_prev"], f2["step_l2"], f2["delta_l2"]) == ("0.0", "1.0", "2.0", "4.0")
    assert {r["model"] for r in read_csv(run_dir / "arms/self_improve/iter_1/analysis/layers.csv")} == {"finetuned"}
    imp = read_csv(run_dir / "arms/imm/iter_1/analysis/importance.csv")
    assert [r["layer"] for r in imp] == ["0", "1", "2", "3"] and all(r["gradient_l2"] for r in imp)
    saved = json.loads((run_dir / "arms/imm/iter_1/analysis/superficiality.json").read_text())
    assert {(f["model"], f["importance"]) for f in saved["figures"]} == {
        (m, k) for m in ("finetuned", "merged") for k in ("ablation", "gradient")}
    for figure in saved["figures"]:
        assert figure["critical_share"] == (1.0 if 1 in figure["critical"] else 0.0)
        assert figure["uniform_share"] == 0.25  # 1 of 4 equal blocks
    assert len(list((run_dir / "analysis_cache").iterdir())) == 2  # θ0 measured once: ablation + gradient
    assert "self_improve" in capsys.readouterr().out


def test_analysis_is_skipped_when_its_outputs_exist(run_dir):
    main(["analyze", str(run_dir), *FAST])
    out = run_dir / "arms/imm/iter_1/analysis/layers.csv"
    before = out.stat().st_mtime_ns
    analyze_iteration(run_dir, "imm", 1, base=run_dir / "base", probe_size=2, max_new_tokens=4, device="cpu")
    assert out.stat().st_mtime_ns == before


def test_analyze_two_checkpoints(run_dir, tmp_path):
    args = ["analyze", "--base", str(run_dir / "base"), "--model", str(run_dir / "arms/imm/iter_1/finetuned"),
            "--out", str(tmp_path / "out"), "--importance", "none"]
    assert main(args) == 0
    rows = read_csv(tmp_path / "out/layers.csv")
    assert next(r for r in rows if (r["layer"], r["module"]) == ("1", "all"))["delta_l2"] == "4.0"
    assert json.loads((tmp_path / "out/superficiality.json").read_text())["figures"] == []


@pytest.mark.parametrize("args, message", [
    (["--base", "x"], "pass RUN_DIR, or all of"),
    (["RUN", "--model", "m"], "not both"),
    (["RUN", "--importance", "saliency"], "unknown importance"),
])
def test_bad_arguments_exit_2_with_one_line(run_dir, capsys, args, message):
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert main(["analyze", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_run_folder_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_run_config_supplies_probe_and_importance(run_dir, tmp_path):
    """config.yaml's analysis section (probe_size 2, importance [gradient]) and model.device are used when the
    command line is silent: importance.csv then has gradients and an empty ablation column."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir / "arms/self_improve", copy / "arms/self_improve",
                    ignore=shutil.ignore_patterns("analysis"))
    config = {"model": {"base": str(run_dir / "base"), "device": "cpu"},
              "analysis": {"probe_task": "arith", "probe_size": 2, "importance": ["gradient"]}}
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["analyze", str(copy), "--max-new-tokens", "4"]) == 0
    out = copy / "arms/self_improve/iter_1/analysis"
    rows = read_csv(out / "importance.csv")
    assert all(r["ablation_drop"] == "" and float(r["gradient_l2"]) > 0 for r in rows)
    saved = json.loads((out / "superficiality.json").read_text())
    assert saved["probe_size"] == 2 and [f["importance"] for f in saved["figures"]] == ["gradient"]


def test_bad_probe_fails_before_reading_checkpoints(tmp_path, capsys):
    """The probe task is checked first: the (missing) checkpoints are never reached."""
    args = ["analyze", "--base", str(tmp_path / "none"), "--model", str(tmp_path / "none"), "--out", str(tmp_path)]
    assert main([*args, "--probe", "no_such_task"]) == 2
    assert "unknown task" in capsys.readouterr().err
