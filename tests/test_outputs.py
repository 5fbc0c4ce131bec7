"""No command deletes what it did not write: the output-folder rule (imm.outputs) on its own and
through every command that writes a folder (merge, eval, analyze, world build, run, score)."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from imm import cli
from imm.errors import UserError
from imm.outputs import MARKER, check_output_dir, output_dir, remove_written

from tiny import tiny_llama

def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    return path


def write(path: Path, kind: str = "merge", text: str = "new") -> Path:
    with output_dir(path, kind) as tmp:
        (tmp / "weights.txt").write_text(text)
    return path


# --- the rule --------------------------------------------------------------------------------

def test_a_new_target_is_written_whole_with_its_marker(tmp_path):
    out = write(tmp_path / "a" / "out")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "weights.txt"]
    assert json.loads((out / MARKER).read_text()) == {"kind": "merge", "files": ["weights.txt"]}
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no temporary left beside it


def test_an_empty_folder_is_written_into(tmp_path):
    (tmp_path / "out").mkdir()
    assert (write(tmp_path / "out") / "weights.txt").read_text() == "new"


def test_a_users_folder_is_refused_even_with_overwrite(tmp_path):
    out = user_folder(tmp_path / "out")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="was not written by imm"):
            with output_dir(out, "merge", overwrite=overwrite):
                pytest.fail("the work must not start")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "notes.txt").read_text() == "mine"


def test_an_imm_output_is_replaced_only_when_asked(tmp_path):
    out = write(tmp_path / "out", text="first")
    with pytest.raises(UserError, match="pass --overwrite to replace it"):
        write(out, text="second")
    assert (out / "weights.txt").read_text() == "first"
    with output_dir(out, "merge", overwrite=True) as tmp:
        (tmp / "other.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "other.txt"]  # replaced whole, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_imm_output_holding_a_users_file_or_of_another_kind_is_refused(tmp_path):
    out = write(tmp_path / "out")
    with pytest.raises(UserError, match="not a eval output"):
        check_output_dir(out, "eval", overwrite=True)
    (out / "sub").mkdir()
    (out / "sub" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files imm did not write \(sub/notes.txt\)"):
        check_output_dir(out, "merge", overwrite=True)
    with pytest.raises(UserError, match="imm did not write it"):
        remove_written(out)
    assert (out / "sub" / "notes.txt").read_text() == "mine"


def test_a_file_and_symbolic_links_are_refused(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file", "merge", overwrite=True)
    elsewhere = write(tmp_path / "elsewhere")
    for target, link in ((elsewhere, "to_output"), (tmp_path / "missing", "dangling")):
        (tmp_path / link).symlink_to(target)
        with pytest.raises(UserError, match="symbolic link"):
            check_output_dir(tmp_path / link, "merge", overwrite=True)
    assert (tmp_path / "file").read_text() == "mine" and (elsewhere / "weights.txt").exists()


def test_a_target_overlapping_an_input_is_refused(tmp_path):
    model = write(tmp_path / "model")  # an imm output, so only the overlap can refuse it
    for target in (model, model / "sub", tmp_path):
        with pytest.raises(UserError, match="overlaps the input"):
            check_output_dir(target, "merge", overwrite=True, inputs=[model])


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path):
    out = write(tmp_path / "out", text="first")
    with pytest.raises(RuntimeError):
        with output_dir(out, "merge", overwrite=True) as tmp:
            (tmp / "weights.txt").write_text("half")
            raise RuntimeError("killed")
    assert (out / "weights.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_remove_written_refuses_what_imm_did_not_make(tmp_path):
    user = user_folder(tmp_path / "user")
    (tmp_path / "file.txt").write_text("mine")
    for path in (user, tmp_path / "file.txt"):
        with pytest.raises(UserError, match="refusing to delete"):
            remove_written(path)
    assert (user / "notes.txt").exists() and (tmp_path / "file.txt").exists()
    temporary = tmp_path / ".out.tmp-abc"
    temporary.mkdir()
    remove_written(temporary)
    assert not temporary.exists()


def test_only_imm_scratch_files_in_the_temporary_folder_are_removed(tmp_path):
    import tempfile

    from imm.outputs import remove_scratch_file

    scratch = tempfile.NamedTemporaryFile(prefix="imm-vllm-", suffix=".log", delete=False)
    scratch.close()
    remove_scratch_file(scratch.name)
    assert not Path(scratch.name).exists()
    other = tempfile.NamedTemporaryFile(prefix="notes-", delete=False)
    other.close()
    mine = tmp_path / "imm-log.txt"
    mine.write_text("kept")
    for path in (other.name, mine):  # another program's scratch file; an imm-named file elsewhere
        with pytest.raises(UserError, match="refusing to delete"):
            remove_scratch_file(path)
        assert Path(path).exists()
    Path(other.name).unlink()  # the test's own file


def test_every_deletion_in_the_package_goes_through_the_guarded_helper():
    """Searchable: rmtree / unlink / os.remove appear only in imm/outputs.py."""
    src = Path(__file__).resolve().parents[1] / "src" / "imm"
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py") if p.name != "outputs.py"
                 and any(word in p.read_text() for word in ("rmtree", ".unlink(", "os.remove(", "shutil.move("))]
    assert offenders == []


# --- the commands ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = tiny_llama()
    base.save_pretrained(root / "base")
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.01)
    base.save_pretrained(root / "ft")
    config = {"merge_method": "task_arithmetic", "base_model": str(root / "base"),
              "models": [{"model": str(root / "ft"), "parameters": {"weight": 0.5}}], "dtype": "float32"}
    (root / "merge.yml").write_text(yaml.safe_dump(config))
    return root


def one_error_line(capsys, fragment: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err


def test_imm_merge_never_replaces_a_users_folder(models, tmp_path, capsys):
    out = user_folder(tmp_path / "out")
    for extra in ([], ["--overwrite"]):
        assert cli.main(["merge", str(models / "merge.yml"), str(out), "--quiet", *extra]) == 2
        one_error_line(capsys, "was not written by imm")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_imm_merge_into_a_file_a_link_or_its_input_exits_2(models, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "link").symlink_to(models / "base")
    cases = {tmp_path / "file": "is a file", tmp_path / "link": "symbolic link", models / "ft": "overlaps the input"}
    for target, fragment in cases.items():
        assert cli.main(["merge", str(models / "merge.yml"), str(target), "--quiet", "--overwrite"]) == 2
        one_error_line(capsys, fragment)
    assert (tmp_path / "file").read_text() == "mine" and (models / "ft" / "config.json").exists()


def test_imm_merge_replaces_its_own_output_only_with_overwrite(models, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["merge", str(models / "merge.yml"), str(out), "--quiet"]) == 0
    capsys.readouterr()
    written = (out / "model.safetensors").stat().st_mtime_ns
    assert cli.main(["merge", str(models / "merge.yml"), str(out), "--quiet"]) == 2
    one_error_line(capsys, "pass --overwrite")
    assert (out / "model.safetensors").stat().st_mtime_ns == written
    assert cli.main(["merge", str(models / "merge.yml"), str(out), "--quiet", "--overwrite"]) == 0
    assert json.loads((out / MARKER).read_text())["kind"] == "merge"


def test_imm_analyze_out_never_replaces_a_users_folder(models, tmp_path, capsys):
    out = user_folder(tmp_path / "out")
    args = ["analyze", "--base", str(models / "base"), "--model", str(models / "ft"), "--importance", "none"]
    assert cli.main([*args, "--out", str(out), "--overwrite"]) == 2
    one_error_line(capsys, "was not written by imm")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert cli.main([*args, "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "layers.csv").exists()
    assert cli.main([*args, "--out", str(tmp_path / "new")]) == 2
    one_error_line(capsys, "pass --overwrite")
    assert cli.main([*args, "--out", str(tmp_path / "new"), "--overwrite"]) == 0


def test_imm_eval_out_never_replaces_a_users_folder(tmp_path, capsys):
    out = user_folder(tmp_path / "out")
    assert cli.main(["eval", "--model", "builtin", "--task", "arith", "--out", str(out), "--overwrite"]) == 2
    one_error_line(capsys, "was not written by imm")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_imm_world_build_checks_its_outputs_before_training(tmp_path, capsys):
    """Refused at once: no pretraining starts (a test of seconds, not of a build)."""
    out = user_folder(tmp_path / "out")
    assert cli.main(["world", "build", "--out", str(out), "--overwrite"]) == 2
    one_error_line(capsys, "was not written by imm")
    assert cli.main(["world", "build"]) == 2  # the shipped base is an earlier build: only with --overwrite
    one_error_line(capsys, "already holds an imm world-model output; pass --overwrite")
    user_folder(tmp_path / "out2-steps" / "step_5")
    assert cli.main(["world", "build", "--out", str(tmp_path / "out2"), "--steps", "5", "--checkpoint-every", "5"]) == 2
    one_error_line(capsys, "step_5 exists and was not written by imm")
    assert not (tmp_path / "out2").exists()


def test_imm_score_does_not_replace_an_existing_file(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"completion": "The answer is 5.", "answer": "5"}) + "\n")
    (tmp_path / "mine.jsonl").write_text("mine")
    assert cli.main(["score", str(rows), "--task", "gsm8k", "--out", str(tmp_path / "mine.jsonl")]) == 2
    one_error_line(capsys, "already exists; pass --overwrite")
    assert (tmp_path / "mine.jsonl").read_text() == "mine"
    assert cli.main(["score", str(rows), "--task", "gsm8k", "--out", str(tmp_path / "mine.jsonl"), "--overwrite"]) == 0


def test_imm_run_writes_only_into_new_folders_or_runs(tmp_path, capsys):
    user_folder(tmp_path / "mine")
    args = ["run", "--config", "smoke", f"out_dir={tmp_path}"]
    assert cli.main([*args, "name=mine"]) == 2
    one_error_line(capsys, "holds no imm run")
    assert cli.main([*args, "name=mine", "--restart"]) == 2
    one_error_line(capsys, "holds no imm run")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_imm_run_restart_removes_only_a_run_folder(tmp_path, capsys):
    from imm.preflight import load_config
    from imm.layout import RunLayout
    from imm.layout import prepare_run_dir

    cfg = load_config("smoke", (f"out_dir={tmp_path}", "name=r"))
    layout = RunLayout(cfg.run_dir)
    prepare_run_dir(cfg, layout, restart=False)
    (cfg.run_dir / "arms").mkdir()
    (cfg.run_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds entries no run writes \(notes.txt\)"):
        prepare_run_dir(cfg, layout, restart=True)
    assert (cfg.run_dir / "notes.txt").exists() and (cfg.run_dir / "arms").exists()
    os.remove(cfg.run_dir / "notes.txt")
    prepare_run_dir(cfg, layout, restart=True)
    assert sorted(p.name for p in cfg.run_dir.iterdir()) == ["config.yaml"]
