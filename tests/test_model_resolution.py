"""Hub ids resolve once to a local snapshot through huggingface_hub's cache, offline included, and the run
records the folder and the commit; offline with no cached copy is one clear line before any work."""

import shutil

import pytest
import yaml

from imm.models import BUILTIN_DIR, fetch_model
from imm.errors import UserError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A cache laid out as the hub client lays it out: models--org--name/{refs/main, snapshots/<commit>/...}."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    repo = cache / "models--imm-test--tiny"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(BUILTIN_DIR, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_a_hub_id_resolves_to_its_cached_snapshot_offline(hub_cache):
    for spec in ("imm-test/tiny", f"imm-test/tiny@{COMMIT}", "imm-test/tiny@main"):
        resolved = fetch_model(spec)
        assert (resolved.folder, resolved.revision, resolved.spec) == (hub_cache, COMMIT, spec)


def test_offline_without_a_cached_copy_is_one_clear_line(hub_cache):
    with pytest.raises(UserError, match="model imm-test/other is not in the Hugging Face cache"):
        fetch_model("imm-test/other")


def test_a_run_records_where_its_models_came_from(hub_cache, tmp_path):
    from imm.config import RunConfig, from_dict
    from imm.loop import run_loop
    from test_loop_wiring import Recorder

    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path / "runs"), "iterations": 1, "arms": ["imm"],
                                "model": {"base": "imm-test/tiny"}, "analysis": {"enabled": False}})
    from imm.layout import RunLayout

    layout = RunLayout(cfg.run_dir)
    recorder = Recorder(layout, hub_cache, tmp_path / "no-teacher")
    run_loop(cfg, stages=recorder.stages())
    saved = yaml.safe_load(layout.config.read_text())
    assert saved["model"]["base"] == "imm-test/tiny"
    assert saved["resolved"] == {"base": {"spec": "imm-test/tiny", "folder": str(hub_cache), "revision": COMMIT}}
    assert ("sample", layout.samples("imm", 1)) in recorder.calls
    assert recorder.name(hub_cache) == "θ0" and '"from": "\\u03b80"' in layout.samples("imm", 1).read_text()
    run_loop(cfg, stages=recorder.stages())  # the recorded folder does not stop a resume


def test_a_run_with_an_uncached_hub_id_writes_nothing(hub_cache, tmp_path):
    from imm.config import RunConfig, from_dict
    from imm.loop import run_loop

    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path / "runs"), "model": {"base": "imm-test/missing"}})
    with pytest.raises(UserError, match="imm-test/missing is not in the Hugging Face cache"):
        run_loop(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_full_iteration_runs_from_a_hub_id(hub_cache, tmp_path):
    """The real stages on a hub id resolved from the cache: sample, verify, fine-tune, merge, evaluate, analyse."""
    import csv

    from imm.cli import main

    args = ["run", "--config", "smoke", f"out_dir={tmp_path}", "name=from-hub", "iterations=1", "arms=[imm]",
            "model.base=imm-test/tiny", "model.threads=1"]
    assert main(args) == 0
    run = tmp_path / "from-hub"
    assert yaml.safe_load((run / "config.yaml").read_text())["resolved"]["base"]["folder"] == str(hub_cache)
    with open(run / "summary.csv") as f:
        models = {(r["iteration"], r["model"]) for r in csv.DictReader(f)}
    assert models == {("0", "generator"), ("1", "finetuned"), ("1", "merged")}
    assert (run / "arms/imm/iter_1/analysis/layers.csv").exists()
