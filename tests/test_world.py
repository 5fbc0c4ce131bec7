"""The built-in world: seeded families, disjoint splits, correct solutions, tokenizer, shipped base."""

import itertools
import re

import pytest

from imm.tasks.arith import FAMILIES, IN_DOMAIN, SPLIT_SIZES, WorldTask, split_of, stream
from imm.tasks.registry import get_task
from imm.verify import check, steps_correct
from imm.world.tokenizer import train_tokenizer


def test_six_families_one_in_domain():
    assert IN_DOMAIN == "arith" and len(FAMILIES) == 6


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generation_is_deterministic_under_a_seed(family):
    first = list(itertools.islice(stream(family, "train", seed=7), 20))
    again = list(itertools.islice(stream(family, "train", seed=7), 20))
    other = list(itertools.islice(stream(family, "train", seed=8), 20))
    assert first == again
    assert first != other


@pytest.mark.parametrize("family", list(FAMILIES))
def test_train_and_test_never_share_a_question(family):
    task = WorldTask(family)
    train = {p.question for p in task.problems("train")}
    test = {p.question for p in task.problems("test")}
    pretrain = {p.question for p in itertools.islice(stream(family, "pretrain"), 5000)}
    assert len(train) == SPLIT_SIZES["train"] and len(test) == SPLIT_SIZES["test"]
    assert not train & test and not pretrain & test and not pretrain & train


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_gold_solution_is_right_and_verifies(family):
    for p in get_task(family).problems("test"):
        assert steps_correct(p.solution), p.solution
        assert check(p.solution, p.answer).correct
        # the chain really is a chain: each step starts from the previous result
        steps = re.findall(r"(-?\d+) [-+*/] \d+ = (-?\d+)\.", p.solution)
        assert all(steps[i][1] == steps[i + 1][0] for i in range(len(steps) - 1))
        assert steps[-1][1] == p.answer and int(p.answer) >= 0


def test_family_shapes():
    """Hand-checked surface of each family: step counts and number ranges."""
    def steps(family):
        return {p.solution.count(" = ") for p in get_task(family).problems("test")[:200]}
    assert steps("arith") == {2, 3} and steps("arith_vocab") == {2, 3} and steps("arith_symbolic") == {2, 3}
    assert steps("arith_long") == {4, 5} and steps("arith_muldiv") == {2}
    assert all(re.search(r"[*/]", p.solution) for p in get_task("arith_muldiv").problems("test"))
    assert all(int(re.findall(r"\d+", p.question)[0]) >= 100 for p in get_task("arith_big").problems("test"))
    assert all(p.question.endswith("= ?") for p in get_task("arith_symbolic").problems("test"))


def test_split_is_a_function_of_the_text():
    """The bucket is the first 4 bytes of sha256(text), big-endian, mod 100: 0-4 test, 5-19 train, else pretrain.
    sha256("q72") starts 3ce7ae50 = 1021816400 -> 0; "q1": c75de8c1 = 3344820417 -> 17;
    "12 + 7 - 5 = ?": 4a6aac36 = 1248504886 -> 86."""
    assert [split_of(q) for q in ("q72", "q1", "12 + 7 - 5 = ?")] == ["test", "train", "pretrain"]
    shares = [split_of(f"q{i}") for i in range(20000)]
    assert abs(shares.count("test") / 20000 - 0.05) < 0.01


def test_world_task_rejects_a_path():
    from imm.errors import UserError

    with pytest.raises(UserError, match="takes no path"):
        get_task("arith=/tmp/x.jsonl")


def test_tokenizer_round_trip_keeps_digits_single():
    corpus = [get_task(f).prompt(p) + " " + p.solution for f in FAMILIES for p in get_task(f).problems("test")[:50]]
    tok = train_tokenizer(corpus, vocab_size=400)
    for text in corpus[:100] + ["Mia has 907 pens. 12 - 5 = 7."]:
        assert tok.decode(tok(text)["input_ids"]) == text
    assert [t for t in tok.tokenize("4072") if t.strip("Ġ")] == ["4", "0", "7", "2"]


def test_shipped_base_loads_with_auto_classes_and_solves_a_problem():
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imm.models import BUILTIN_DIR
    from imm.engines.hf import generate

    model = AutoModelForCausalLM.from_pretrained(BUILTIN_DIR).eval()
    tok = AutoTokenizer.from_pretrained(BUILTIN_DIR)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 8
    report = json.loads((BUILTIN_DIR / "build_report.json").read_text())
    assert set(report["accuracy"]) == set(FAMILIES)
    task = get_task("arith")
    problems = task.problems("test")[:16]
    out = generate(model, tok, [task.prompt(p) for p in problems], max_new_tokens=96, stop=task.stop)
    solved = sum(task.check(c[0].text, p).correct for c, p in zip(out, problems))
    assert solved >= 8, f"the shipped base solved only {solved}/16 in-domain problems"
    assert all(c[0].text.rstrip().endswith(".") and "The answer is" in c[0].text for c in out)
