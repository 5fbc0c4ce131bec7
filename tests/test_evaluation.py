"""The evaluation harness: metrics of given completions (pinned by hand), `evaluate` on a tiny random
Llama built in code, and `imm eval` end to end on a saved tiny checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from imm import cli
from imm.engines.hf import HFEngine
from imm.evaluation import evaluate, score_completions
from imm.tasks.base import Problem, Task


@dataclass(frozen=True)
class FakeCompletion:
    text: str
    num_tokens: int = 4
    mean_entropy: float = 1.0


PROBLEMS = [Problem("toy", "q1", "2 + 3?", "5"), Problem("toy", "q2", "3 + 4?", "7")]


class ToyTask(Task):
    name = "toy"


def test_score_completions_pinned_by_hand():
    """greedy: 'The answer is 5.' (right), 'I get 7' (strict: none; flexible: 7) -> strict 1/2, flexible 2/2.
    samples q1: 5, 4, 5 -> pass, majority 5 right, 2 unique; q2: 6, none, 6 -> no pass, majority 6 wrong,
    2 unique (6 and 'none'). pass@3 = maj@3 = 1/2; sample accuracy 2/6; unique answers (2 + 2) / 2.
    distinct-1: q1 has 12 words, 5 different (The answer is 5. 4.) -> 5/12; q2 10 words, 6 different
    (The answer is 6. no idea) -> 6/10; mean 0.508333. Entropy: (1*4*5 + 4*2*1) / (4*5 + 2*1) = 28/22."""
    greedy = [FakeCompletion("The answer is 5."), FakeCompletion("I get 7")]
    sampled = [
        [FakeCompletion("The answer is 5."), FakeCompletion("The answer is 4."), FakeCompletion("The answer is 5.")],
        [FakeCompletion("The answer is 6."), FakeCompletion("no idea", 2, 4.0), FakeCompletion("The answer is 6.")],
    ]
    result = score_completions(ToyTask(), PROBLEMS, ["p1", "p2"], greedy, sampled)
    m = result.metrics
    assert (result.task, result.n, len(result.rows)) == ("toy", 2, 8)
    assert (m["strict-match"], m["flexible-extract"]) == (0.5, 1.0)
    assert (m["pass@3"], m["maj@3"], m["sample-accuracy"]) == (0.5, 0.5, pytest.approx(2 / 6))
    assert m["unique-answers"] == 2.0
    assert m["distinct-1"] == pytest.approx((5 / 12 + 6 / 10) / 2)
    assert m["entropy"] == pytest.approx(28 / 22)
    assert 0 < m["self-bleu"] < 1
    first = result.rows[1]
    assert {k: first[k] for k in ("id", "sample", "prompt", "gold", "extracted", "correct", "flexible_extracted")} == {
        "id": "q2", "sample": "greedy", "prompt": "p2", "gold": "7", "extracted": None, "correct": False,
        "flexible_extracted": "7"}
    assert [r["sample"] for r in result.rows[2:5]] == [0, 1, 2]


def test_score_completions_greedy_only_reports_two_metrics():
    result = score_completions(ToyTask(), PROBLEMS, ["p1", "p2"], [FakeCompletion("#### 5")] * 2)
    assert result.metrics == {"strict-match": 0.5, "flexible-extract": 0.5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer Llama and a small BPE tokenizer, saved as a checkpoint folder."""
    from tiny import tiny_llama

    from imm.tasks.arith import stream
    from imm.world.tokenizer import train_tokenizer

    corpus = [f"Question: {p.question}\nAnswer: {p.solution}" for p, _ in zip(stream("arith", "pretrain"), range(200))]
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    model = tiny_llama(tokenizer=tokenizer, bos_token_id=tokenizer.eos_token_id).eval()
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


def test_evaluate_on_a_tiny_model_is_complete_and_seeded(tiny):
    from imm.tasks.registry import get_task

    model, tokenizer, _ = tiny
    task = get_task("arith")
    problems = task.problems("test")[:2]
    engine = HFEngine(model, tokenizer)
    run = lambda: evaluate(engine, task, problems, k=2, temperature=1.0, max_new_tokens=5, seed=7)
    first, second = run(), run()
    assert first.n == 2 and len(first.rows) == 2 + 2 * 2
    always = {"strict-match", "flexible-extract", "pass@2", "maj@2", "sample-accuracy", "distinct-1",
              "self-bleu", "unique-answers", "entropy"}
    optional = {f"distinct-{n}" for n in (2, 3, 4)}  # no EAD: its V is the report's, one for every model
    assert always <= set(first.metrics) <= always | optional  # short texts
    assert first.metrics["entropy"] > 0  # a random model is far from deterministic
    assert [r["completion"] for r in first.rows] == [r["completion"] for r in second.rows]  # same seed, same text


def _eval_args(model: Path, gsm: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model), "--task", "arith", f"gsm8k={gsm}", "--limit", "2", "--samples", "2",
            "--max-new-tokens", "4", "--batch-size", "8", "--out", str(out)]


def test_imm_eval_writes_results_and_samples(tiny, tmp_path):
    _, _, folder = tiny
    gsm = tmp_path / "gsm.jsonl"
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(3)]
    gsm.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert cli.main(_eval_args(folder, gsm, tmp_path / "out")) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert set(results) == {"arith", "gsm8k"}
    assert results["gsm8k"]["n"] == 2 and "pass@2" in results["gsm8k"] and "strict-match" in results["arith"]
    samples = [json.loads(l) for l in (tmp_path / "out" / "samples_gsm8k.jsonl").read_text().splitlines()]
    assert len(samples) == 2 + 2 * 2
    assert {"prompt", "completion", "extracted", "gold", "correct"} <= set(samples[0])
    assert [s["gold"] for s in samples[:2]] == ["1", "2"]


def test_imm_eval_checks_tasks_before_loading_the_model(tmp_path, capsys):
    """The model path does not exist: the task error must come first (fail before the expensive part)."""
    args = _eval_args(tmp_path / "no-model", tmp_path / "missing.jsonl", tmp_path / "out")
    assert cli.main(args) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    assert cli.main(["eval", "--model", "x", "--task", "arith", "arith", "--out", str(tmp_path)]) == 2
    assert "given twice" in capsys.readouterr().err
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(json.dumps({"question": "1 + 1?", "answer": "#### 2"}) + "\n", encoding="utf-8")
    assert cli.main(["eval", "--model", "x", "--task", f"gsm8k={gsm}", "--shots", "1", "--out", str(tmp_path / "out")]) == 2
    # one file is read for both splits: its worked examples would be the evaluated set itself
    assert "gsm8k has no train split apart from the set it is evaluated on" in capsys.readouterr().err
    folder = tmp_path / "gsm"
    folder.mkdir()
    (folder / "test.jsonl").write_text(gsm.read_text(), encoding="utf-8")
    (folder / "train.jsonl").write_text(gsm.read_text(), encoding="utf-8")  # its one example is the asked question
    assert cli.main(["eval", "--model", "x", "--task", f"gsm8k={folder}", "--shots", "1", "--out", str(tmp_path / "out")]) == 2
    assert "gsm8k has 0 worked examples outside the asked questions, fewer than prompt.shots=1" in capsys.readouterr().err
