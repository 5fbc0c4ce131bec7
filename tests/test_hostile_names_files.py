"""Hostile names and files: names cannot leave the run folder or the HTML, a file imm did not write is never
replaced, outputs honour the umask, and broken or malicious input files are one line with exit code 2."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from imm import cli
from imm.config import load_config, to_dict
from imm.errors import UserError
from imm.layout import RunLayout, prepare_run_dir
from imm.outputs import atomic_write_text, check_output_file, output_dir
from imm.report.cli import is_report_markdown
from imm.report.document import Cell, Figure, Report, Section, Table
from imm.report.render import to_html, to_markdown
from imm.tasks.loading import read_rows


def one_error_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err
    return err[0]


# --- names that become paths or HTML -----------------------------------------------------------

@pytest.mark.parametrize("override, what", [
    ("name=../outside", "name (the run folder's name) '../outside'"),
    ("name=.hidden", "name (the run folder's name) '.hidden'"),
    ('merge_arms={"x\\" onerror=\\"alert(1)": {method: imm}}', "arm name 'x\" onerror=\"alert(1)'"),
    ("merge_arms={../../escape: {method: imm}}", "arm name '../../escape'"),
    ("merge_arms={a/b: {method: imm}}", "arm name 'a/b'"),
    ("arms=['<script>']", "arm name '<script>'"),
])
def test_a_name_that_is_not_an_identifier_is_refused_at_load(override, what, tmp_path, capsys):
    assert cli.main(["run", "--config", "smoke", override, f"out_dir={tmp_path}"]) == 2
    line = one_error_line(capsys, what)
    assert "is not a plain name" in line
    assert not list(tmp_path.iterdir()) and not (tmp_path.parent / "escape").exists()


def test_plain_names_pass():
    cfg = load_config("smoke", ("name=lr0.5-run_2", "merge_arms={ties_half: {method: ties}}", "arms=[imm, ties_half]"))
    assert cfg.name == "lr0.5-run_2" and cfg.arms == ("imm", "ties_half")


def _hostile_report() -> Report:
    evil = 'x" onerror="alert(1)'
    section = Section('s"<b>', 'a" onclick="alert(2)', paragraphs=["<script>alert(3)</script>"],
                      bullets=["<img src=x onerror=alert(4)>"],
                      tables=[Table("<i>t</i>", ("<th>",), ((Cell("<svg onload=alert(5)>"),),), note="<u>n</u>")],
                      figures=[Figure(f"layers_{evil}.png", f"{evil}: caption", b"")])
    return Report("<title>", ["run<1>`"], [section])


def test_every_value_in_the_html_page_is_escaped_for_its_context():
    """Attribute values (img src, section id, nav href) and text: no quote or tag from the data survives."""
    page = to_html(_hostile_report())
    for raw in ('" onerror="', '" onclick="', "<script>", "<img src=x", "<svg", "<i>t</i>", "<u>n</u>", "<th><"):
        assert raw not in page, raw
    assert 'src="layers_x%22%20onerror%3D%22alert%281%29.png"' in page


def test_the_markdown_shows_html_from_the_data_as_text():
    md = to_markdown(_hostile_report())
    for raw in ("<script>", "<img", "<svg", "<i>", "<u>", "<title>", "<b>"):
        assert raw not in md, raw
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in md and "`run<1>`" in md


# --- files imm did not write are never replaced --------------------------------------------------

def test_report_markdown_replaces_only_a_file_imm_wrote(tmp_path):
    mine, ours = tmp_path / "notes.md", tmp_path / "tables.md"
    mine.write_text("# my notes\n")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="imm did not write it") as err:
            check_output_file(mine, is_report_markdown, overwrite=overwrite)
        assert "--overwrite" not in str(err.value)
    atomic_write_text(ours, to_markdown(_hostile_report()))
    with pytest.raises(UserError, match="pass --overwrite to replace it"):
        check_output_file(ours, is_report_markdown)
    check_output_file(ours, is_report_markdown, overwrite=True)


def test_imm_run_never_takes_over_a_folder_holding_a_users_config(tmp_path, capsys):
    """The user's config.yaml has the run's very settings; the run still refuses, and the file is untouched."""
    folder = tmp_path / "mine"
    folder.mkdir()
    text = "# my experiment\n" + yaml.safe_dump(to_dict(load_config("smoke", (f"out_dir={tmp_path}", "name=mine"))))
    (folder / "config.yaml").write_text(text)
    assert cli.main(["run", "--config", str(folder / "config.yaml")]) == 2
    one_error_line(capsys, "is not an imm run folder")
    assert (folder / "config.yaml").read_text() == text and sorted(os.listdir(folder)) == ["config.yaml"]


def test_a_runs_saved_config_is_a_valid_config(tmp_path):
    cfg = load_config("smoke", (f"out_dir={tmp_path}", "name=r", "merge_arms={ties_half: {method: ties}}"))
    prepare_run_dir(cfg, RunLayout(cfg.run_dir), restart=False)
    assert "resolved" in yaml.safe_load((cfg.run_dir / "config.yaml").read_text())
    assert load_config(str(cfg.run_dir / "config.yaml")) == cfg


@pytest.mark.parametrize("text, shown", [("", "an empty file"), ("null\n", "an empty file"), ("0\n", "a int"),
                                         ("- a\n", "a list")])
def test_an_empty_or_non_mapping_config_file_is_refused(text, shown, tmp_path):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(UserError, match=f"must be a mapping of keys to values .*got {shown}"):
        load_config(str(tmp_path / "c.yaml"))


# --- outputs honour the umask ----------------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                            (0o077, 0o600, 0o700)])
def test_outputs_honour_the_umask(umask, file_mode, folder_mode, tmp_path):
    """open() and mkdir() give 0o666 & ~umask and 0o777 & ~umask; imm's atomic writes must give the same."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with output_dir(tmp_path / "out", "eval") as tmp:
            (tmp / "b.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == folder_mode
    assert stat.S_IMODE((tmp_path / "out" / "imm_output.json").stat().st_mode) == file_mode


# --- hostile files: one line ---------------------------------------------------------------------

def test_a_deeply_nested_score_file_is_one_line(tmp_path, capsys):
    (tmp_path / "deep.jsonl").write_text("[" * 200_000 + "\n")
    assert cli.main(["score", str(tmp_path / "deep.jsonl"), "--task", "gsm8k"]) == 2
    one_error_line(capsys, "line 1 of")


def test_a_deeply_nested_task_file_is_one_line(tmp_path):
    (tmp_path / "test.json").write_text("[" * 200_000)
    (tmp_path / "test.jsonl").write_text('{"question": "q"}\n' + "[" * 200_000 + "\n")
    with pytest.raises(UserError, match="nests lists or objects too deeply"):
        read_rows(tmp_path / "test.json", "gsm8k")
    with pytest.raises(UserError, match="line 2 of .* nests lists or objects too deeply"):
        read_rows(tmp_path / "test.jsonl", "gsm8k")


def test_a_score_file_that_is_not_utf8_names_the_line(tmp_path, capsys):
    good = json.dumps({"completion": "The answer is 5.", "answer": "5"}).encode()
    (tmp_path / "latin1.jsonl").write_bytes(good + b"\n" + b'{"completion": "caf\xe9", "answer": "1"}\n')
    assert cli.main(["score", str(tmp_path / "latin1.jsonl"), "--task", "gsm8k"]) == 2
    one_error_line(capsys, "line 2 of")
    assert not (tmp_path / "latin1.scored.jsonl").exists()
