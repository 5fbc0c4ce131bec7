"""End to end: the shipped smoke config runs both arms for 2 iterations on the built-in model, and a
run killed mid-iteration resumes to the same summary.csv as an uninterrupted one."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imm.cli import main

pytestmark = pytest.mark.slow  # every test here trains models: `pytest -m "not slow"` skips them

SMOKE = ("model.threads=1",)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "--config", "smoke", f"out_dir={out}", *SMOKE]) == 0
    return out / "smoke"


def test_smoke_run_writes_the_documented_layout(smoke_run):
    for arm in ("self_improve", "imm"):
        for t in (1, 2):
            d = smoke_run / "arms" / arm / f"iter_{t}"
            for name in ("samples.jsonl", "dataset.jsonl", "finetuned/config.json", "finetuned/model.safetensors",
                         "finetuned/tokenizer.json", "eval/finetuned.json", "analysis/layers.csv"):
                assert (d / name).exists(), d / name
            assert (d / "merged" / "model.safetensors").exists() == (arm == "imm")
    assert (smoke_run / "config.yaml").exists()
    assert not list(smoke_run.rglob(".*tmp-*")), "a temporary file was left behind"


def test_summary_has_every_arm_iteration_model_and_task(smoke_run):
    with open(smoke_run / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arm", "iteration", "model", "task", "domain", "metric", "value", "n"]
    strict = {(r["arm"], r["iteration"], r["model"], r["task"]) for r in rows if r["metric"] == "strict-match"}
    tasks = ["arith", "arith_vocab", "arith_long", "arith_muldiv", "arith_big", "arith_symbolic"]
    expected = {(a, "0", "generator", t) for a in ("self_improve", "imm") for t in tasks}
    expected |= {(a, str(i), "finetuned", t) for a in ("self_improve", "imm") for i in (1, 2) for t in tasks}
    expected |= {("imm", str(i), "merged", t) for i in (1, 2) for t in tasks}
    assert strict >= expected
    assert {r["domain"] for r in rows if r["task"] == "arith"} == {"id"}
    assert {r["n"] for r in rows if r["metric"] == "strict-match" and r["task"] in tasks} == {"24"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["metric"] == "strict-match")


def test_both_arms_share_the_first_iteration(smoke_run):
    si, imm = (smoke_run / "arms" / a / "iter_1" for a in ("self_improve", "imm"))
    assert (si / "samples.jsonl").read_bytes() == (imm / "samples.jsonl").read_bytes()
    assert (si / "finetuned" / "model.safetensors").read_bytes() == (imm / "finetuned" / "model.safetensors").read_bytes()


def test_a_killed_run_resumes_to_the_same_summary(smoke_run, tmp_path):
    """Kill the run as soon as the imm arm's second iteration has started, then re-run the same command."""
    cmd = [sys.executable, "-m", "imm", "run", "--config", "smoke", f"out_dir={tmp_path}", *SMOKE]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = tmp_path / "smoke" / "arms" / "imm" / "iter_2" / "samples.jsonl"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    finished = proc.poll() is not None  # summary.csv is refreshed every iteration: the exit status tells
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists() and not finished, "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert (tmp_path / "smoke" / "summary.csv").read_text() == (smoke_run / "summary.csv").read_text()


def test_the_loop_runs_on_real_data_files_and_survives_an_iteration_without_verified_samples(shared_data, tmp_path, capsys):
    """GSM8K in-domain, SVAMP out-of-domain, from the local copies: the tiny built-in model solves no
    GSM8K question, so the iteration has no verified sample: it warns, records it and carries on."""
    gsm8k, svamp = shared_data / "gsm8k", shared_data / "svamp" / "SVAMP.json"
    args = ["run", "--config", "smoke", f"out_dir={tmp_path}", "name=real", "iterations=1", "arms=[imm]",
            f"data.train_task=gsm8k={gsm8k}", f"data.id_tasks=[gsm8k={gsm8k}]", f"data.ood_tasks=[svamp={svamp}]",
            "data.train_questions=4", "eval.limit=4", "eval.diversity_questions=2", "sampling.max_new_tokens=16",
            "eval.max_new_tokens=16", "analysis.enabled=false", *SMOKE]
    assert main(args) == 0
    assert "no verified sample" in capsys.readouterr().out
    with open(tmp_path / "real" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["task"], r["domain"]) for r in rows if r["metric"] == "strict-match"} == {
        ("gsm8k", "id"), ("svamp", "ood"), ("gsm8k@diversity", "id")}
    assert {r["model"] for r in rows} == {"generator", "finetuned", "merged"}
