"""`imm score`: re-judging saved completions without a model."""

from __future__ import annotations

import json
from pathlib import Path

from imm import cli


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [
    {"completion": "3 + 4 = 7. The answer is 7.", "answer": "7", "id": "a"},
    {"completion": "I think 12", "answer": "12", "id": "b"},  # strict: no answer; flexible: 12
    {"completion": "The answer is 1,000.", "gold": 1000, "id": "c", "extracted": "stale", "correct": False},
]


def test_score_strict_and_flexible(tmp_path, capsys):
    """strict: a (7 = 7) and c (1,000 = 1000) right, b has no 'The answer is' -> 2/3; flexible: 3/3."""
    src = _write(tmp_path / "samples.jsonl", ROWS)
    assert cli.main(["score", str(src), "--task", "gsm8k"]) == 0
    assert "strict-match: 0.6667 (2/3)" in capsys.readouterr().out
    scored = [json.loads(l) for l in (tmp_path / "samples.scored.jsonl").read_text().splitlines()]
    assert [(r["id"], r["extracted"], r["correct"]) for r in scored] == [("a", "7", True), ("b", None, False),
                                                                        ("c", "1,000", True)]
    out = tmp_path / "flex.jsonl"
    assert cli.main(["score", str(src), "--task", "gsm8k", "--metric", "flexible-extract", "--out", str(out)]) == 0
    assert "flexible-extract: 1.0000 (3/3)" in capsys.readouterr().out
    assert [r["extracted"] for r in map(json.loads, out.read_text().splitlines())] == ["7", "12", "1,000"]


def test_score_uses_the_task_answer_kind(tmp_path, capsys):
    """math: '\\dfrac{1}{2}' equals gold '0.5' (numbers, in-process); choice: '(b)' is not a capital letter."""
    math_rows = [{"completion": "so \\boxed{\\dfrac{1}{2}}", "answer": "0.5"}]
    assert cli.main(["score", str(_write(tmp_path / "m.jsonl", math_rows)), "--task", "math"]) == 0
    assert "math strict-match: 1.0000 (1/1)" in capsys.readouterr().out
    choice_rows = [{"completion": "The answer is (B).", "answer": "B"}, {"completion": "The answer is (b)", "answer": "B"}]
    assert cli.main(["score", str(_write(tmp_path / "c.jsonl", choice_rows)), "--task", "aqua"]) == 0
    assert "aqua strict-match: 0.5000 (1/2)" in capsys.readouterr().out


def test_score_errors_name_the_line(tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", [ROWS[0], "{not json"])
    assert cli.main(["score", str(bad), "--task", "gsm8k"]) == 2
    assert "line 2" in capsys.readouterr().err
    no_gold = _write(tmp_path / "nogold.jsonl", [{"completion": "The answer is 3."}])
    assert cli.main(["score", str(no_gold), "--task", "gsm8k"]) == 2
    assert "line 1" in capsys.readouterr().err and not (tmp_path / "nogold.scored.jsonl").exists()
    assert cli.main(["score", str(tmp_path / "none.jsonl"), "--task", "gsm8k"]) == 2
    assert cli.main(["score", str(bad), "--task", "nope"]) == 2
    assert "unknown task" in capsys.readouterr().err
