"""Real task suites on the offline copies in ../shared/data: every gold parses, every gold solution is
judged correct, every perturbed answer is judged wrong; plus the loader's errors on bad input."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from imm import verify
from imm.errors import UserError
from imm.tasks.base import Problem
from imm.tasks.choice import LETTERS
from imm.tasks.registry import TASKS, get_task
from imm.tasks.sat_math import split_options

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
QWEN = DATA / "qwen25math_eval"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"offline data sets not found at {DATA}")

# spec -> rows (test split). ASDiv: 2,215 rows, 131 non-numeric answers dropped.
NUMBER_SETS = {
    f"gsm8k={DATA / 'gsm8k'}": 1319, f"gsm8k={QWEN / 'gsm8k'}": 1319, f"svamp={DATA / 'svamp'}": 1000,
    f"svamp={QWEN / 'svamp'}": 1000, f"asdiv={QWEN / 'asdiv'}": 2084, f"mawps={QWEN / 'mawps'}": 2065,
    f"mawps_addsub={QWEN / 'mawps'}": 395, f"mawps_multiarith={QWEN / 'mawps'}": 600,
    f"mawps_singleeq={QWEN / 'mawps'}": 508, f"mawps_singleop={QWEN / 'mawps'}": 562,
}
CHOICE_SETS = {f"aqua={QWEN / 'aqua'}": (254, 5), f"sat_math={QWEN / 'sat_math'}": (32, 4),
               f"mmlu_stem={QWEN / 'mmlu_stem'}": (3018, 4)}


def _perturbed(gold: str) -> str:
    """gold + 1, written exactly ('4.5e33' -> '4500000000000000000000000000000001', '0.5' -> '3/2')."""
    value = verify.parse_number(gold) + 1
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


@needs_data
@pytest.mark.parametrize("spec, rows", NUMBER_SETS.items(), ids=lambda v: str(v).split("=")[0])
def test_number_sets(spec, rows):
    task = get_task(spec)
    problems = task.problems("test")
    assert len(problems) == rows
    assert all(verify.parse_number(p.answer) is not None for p in problems)
    for metric in verify.METRICS:
        assert all(v.correct for v in task.check_many([p.solution for p in problems], problems, metric))
    wrong = task.check_many([f"The answer is {_perturbed(p.answer)}." for p in problems], problems)
    assert not any(v.correct for v in wrong)


@needs_data
def test_gsm8k_train_split_and_solution_format():
    problems = get_task(f"gsm8k={DATA / 'gsm8k'}").problems("train")
    assert len(problems) == 7473
    first = problems[0]  # "Natalia sold 48/2 = <<48/2=24>>24 clips in May. ... #### 72"
    assert first.answer == "72"
    assert first.solution.endswith("altogether in April and May. The answer is 72.")
    assert "<<" not in first.solution and "####" not in first.solution and "\n" not in first.solution


@needs_data
@pytest.mark.parametrize("spec, shape", CHOICE_SETS.items(), ids=lambda v: str(v).split("=")[0])
def test_choice_sets(spec, shape):
    rows, options = shape
    task = get_task(spec)
    problems = task.problems("test")
    assert len(problems) == rows
    assert all(p.answer in LETTERS[:options] for p in problems)
    assert all(f"({LETTERS[options - 1]}) " in p.question and "\nAnswer Choices: (A) " in p.question for p in problems)
    assert all(v.correct for v in task.check_many([p.solution for p in problems], problems))
    other = [LETTERS[(LETTERS.index(p.answer) + 1) % options] for p in problems]
    assert not any(v.correct for v in task.check_many([f"The answer is ({o})." for o in other], problems))


@needs_data
def test_competition_math_golds_and_solutions():
    """All 272 Minerva golds come from a \\boxed{}; each gold solution is judged correct in-process
    (the judge below refuses work); numeric golds + 1 are judged wrong in-process as well."""
    class NoJudge:
        def equivalent_many(self, pairs):
            raise AssertionError("gold solutions must be decided by the fast path")

    task = get_task(f"minerva_math={QWEN / 'minerva_math'}")
    problems = task.problems("test")
    assert len(problems) == 272 and all(p.answer for p in problems)
    golds = [p.answer for p in problems]
    solutions = verify.check_many([p.solution for p in problems], golds, "math", judge=NoJudge())
    assert all(v.correct for v in solutions)
    numeric = [p for p in problems if verify.parse_number(p.answer) is not None]
    assert len(numeric) == 191  # not numbers: '7.6 Z' (Z a symbol) and '\\frac{1}{2}(\\exp{a*t} + ...)'
    wrong = verify.check_many([f"\\boxed{{{_perturbed(p.answer)}}}" for p in numeric], [p.answer for p in numeric],
                              "math", judge=NoJudge())
    assert not any(v.correct for v in wrong)


@needs_data
def test_competition_math_symbolic_golds_through_math_verify():
    """Symbolic golds (rows 12, 25, 28, 30, 41: fractions, roots, powers) parse in math-verify and
    equal themselves; '+ 1' makes each of them wrong. Run on 5 rows: math-verify is slow on 2 cores."""
    task = get_task(f"minerva_math={QWEN / 'minerva_math'}")
    by_id = {p.id: p.answer for p in task.problems("test")}
    golds = [by_id[f"minerva_math-{i}"] for i in (12, 25, 28, 30, 41)]
    judge = verify.SymbolicJudge(workers=2, timeout_s=5.0)
    try:
        assert judge.equivalent_many([(g, g) for g in golds]) == [True] * 5
        assert judge.equivalent_many([(f"{g} + 1", g) for g in golds]) == [False] * 5
    finally:
        judge.close()


def test_split_options_reads_both_label_styles():
    assert split_options("A) $f(-6)=0$ B) $f(6)=-6$ C) 1 D) -10 and 10") == ["$f(-6)=0$", "$f(6)=-6$", "1", "-10 and 10"]
    assert split_options("A. Rana's sample B. data set A. is small C. x") == ["Rana's sample", "data set A. is small", "x"]
    with pytest.raises(ValueError):
        split_options("no labels")


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GSM_ROW = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"}


def test_local_file_folder_and_prompt(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [GSM_ROW])
    _write_jsonl(tmp_path / "test.jsonl", [GSM_ROW, {**GSM_ROW, "answer": "#### 1,000"}])
    folder = get_task(f"gsm8k={tmp_path}")
    assert [p.answer for p in folder.problems("test")] == ["5", "1000"]
    assert len(folder.problems("train")) == 1
    single = get_task(f"gsm8k={tmp_path / 'test.jsonl'}")  # a file serves whichever split is asked
    shot = single.problems("test")[0]
    assert shot.solution == "2 + 3 = 5 The answer is 5."
    assert folder.prompt(shot, shots=[shot]) == (
        f"Question: {GSM_ROW['question']}\nAnswer: Let's think step by step. 2 + 3 = 5 The answer is 5.\n\n"
        f"Question: {GSM_ROW['question']}\nAnswer: Let's think step by step."
    )


def test_folder_with_one_data_file_and_json_list(tmp_path):
    row = {"ID": "chal-1", "Body": "Dan had $ 3", "Question": "How much?", "Equation": "( 4.0 - 3.0 )", "Answer": 1.0}
    (tmp_path / "SVAMP.json").write_text(json.dumps([row]), encoding="utf-8")
    problem = get_task(f"svamp={tmp_path}").problems("test")[0]
    assert problem == Problem("svamp", "svamp-chal-1", "Dan had $ 3. How much?", "1", "(4 - 3) = 1. The answer is 1.")


@pytest.mark.parametrize("content, message", [
    ('{"question": "q", "answer": "#### 5"}\n{broken\n', "line 2"),
    ('{"question": "q", "answer": "no final line"}\n', "row 1"),
    ('{"question": "q"}\n', "row 1"),
])
def test_bad_local_rows_are_user_errors(tmp_path, content, message):
    (tmp_path / "test.jsonl").write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        get_task(f"gsm8k={tmp_path / 'test.jsonl'}").problems("test")


def test_path_and_name_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        get_task(f"gsm8k={tmp_path / 'missing'}")
    _write_jsonl(tmp_path / "a.jsonl", [GSM_ROW])
    _write_jsonl(tmp_path / "b.jsonl", [GSM_ROW])
    with pytest.raises(UserError, match="no test.jsonl"):
        get_task(f"gsm8k={tmp_path}").problems("test")
    with pytest.raises(UserError, match="unknown task"):
        get_task("gsm9k")
    with pytest.raises(UserError, match="takes no path"):
        get_task(f"arith={tmp_path}")


def test_hub_loading_fails_clearly_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(UserError, match=r"gsm8k=PATH"):
        get_task("gsm8k").problems("test")
    with pytest.raises(UserError, match=r"no Hugging Face copy.*mawps=PATH"):
        get_task("mawps").problems("test")


def test_hub_loading_uses_the_usual_id_and_reports_network_errors(monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        if name == "openai/gsm8k":
            return [GSM_ROW]
        raise ConnectionError("Couldn't reach the hub\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert get_task("gsm8k").problems("test")[0].answer == "5"
    with pytest.raises(UserError, match=r"Couldn't reach the hub\); pass asdiv=PATH"):
        get_task("asdiv").problems("test")
    assert calls == [("openai/gsm8k", "main", "test"), ("EleutherAI/asdiv", None, "validation")]


def test_registry_lists_every_issue_task():
    wanted = {"gsm8k", "svamp", "asdiv", "mawps", "mawps_addsub", "mawps_multiarith", "mawps_singleeq",
              "mawps_singleop", "math", "minerva_math", "aqua", "sat_math", "mmlu_stem", "arith", "arith_long"}
    assert wanted <= set(TASKS)
