"""Generation work is shared out without changing what is generated: forked CPU workers run whole batches
(the same prompts, the same per-batch seeds), and an evaluation of several tasks answers all their
greedy prompts in one call. Texts and token counts are equal; entropies, sums over the vocabulary that
torch's thread count and a batch's shape may reorder, agree to a relative 1e-5 (docs/benchmarks.md)."""

import math

import pytest

from imm.engines.hf import HFEngine, generate
from imm.evaluation.harness import Asked, evaluate, evaluate_many
from imm.models import load_model
from imm.prompts import Prompter
from imm.tasks.registry import get_task


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin", device="cpu")


def _prompts(names=("arith", "arith_long", "arith_muldiv"), n=24):
    out = []
    for name in names:
        task = get_task(name)
        out += [Prompter(task)(p) for p in task.problems("test")[:n]]
    return out


def _same(a, b):
    assert [[c.text for c in g] for g in a] == [[c.text for c in g] for g in b]
    assert [[c.num_tokens for c in g] for g in a] == [[c.num_tokens for c in g] for g in b]
    for x, y in zip((c for g in a for c in g), (c for g in b for c in g)):
        assert math.isclose(x.mean_entropy, y.mean_entropy, rel_tol=1e-5, abs_tol=1e-9)


@pytest.mark.parametrize("options", [dict(k=1, temperature=0.0), dict(k=3, temperature=1.0, seed=11)])
def test_forked_workers_generate_what_one_process_does(builtin, options):
    model, tokenizer = builtin
    prompts = _prompts()
    run = lambda workers: generate(model, tokenizer, prompts, max_new_tokens=48, batch_size=24, workers=workers,
                                   **options)
    one, two = run(1), run(2)
    _same(one, two)
    if options["temperature"]:  # sampling really is seeded per batch, not shared by chance
        assert run(2) == two
        other = generate(model, tokenizer, prompts, max_new_tokens=48, batch_size=24, workers=2,
                         **(options | dict(seed=12)))
        assert [c.text for g in other for c in g] != [c.text for g in two for c in g]


def test_requests_in_one_queue_get_what_each_gets_alone(builtin):
    """generate_many with two workers: a greedy request and a sampled one share one queue of batches, and
    each request's completions equal its own generate call's, exactly (the workers and the test run one
    torch thread each)."""
    from imm.engines import Request
    from imm.engines.hf import generate_many

    model, tokenizer = builtin
    greedy = Request(_prompts(), 1, 0.0, 1.0, 48, (), 5)
    sampled = Request(_prompts(("arith",), n=10), 3, 1.0, 0.9, 48, (), 6)
    together = generate_many(model, tokenizer, [greedy, sampled], batch_size=24, workers=2)
    alone = [generate(model, tokenizer, r.prompts, k=r.k, temperature=r.temperature, top_p=r.top_p,
                      max_new_tokens=48, stop=(), seed=r.seed, batch_size=24, workers=1) for r in (greedy, sampled)]
    assert together == alone
    assert len({c.text for g in together[1] for c in g}) > len(together[1])  # the samples really differ


class Recording:
    """The real engine, counting the prompts each call asks for."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []
        self.tokenizer = engine.tokenizer

    def generate(self, prompts, **options):
        self.calls.append((len(prompts), options["k"]))
        return self.engine.generate(prompts, **options)

    def generate_many(self, requests):
        self.calls += [(len(r.prompts), r.k) for r in requests]
        return self.engine.generate_many(requests)


def test_one_greedy_call_for_all_tasks_equals_one_evaluation_per_task(builtin):
    model, tokenizer = builtin
    engine = Recording(HFEngine(model, tokenizer, batch_size=32, workers=1))
    tasks = [get_task(name) for name in ("arith", "arith_big", "arith_symbolic")]
    asked = [Asked(t, t.problems("test")[:20]) for t in tasks]
    asked.append(Asked(tasks[0], tasks[0].problems("test")[:8], k=2, temperature=1.0))  # its greedy prompts: asked above
    together = evaluate_many(engine, asked, max_new_tokens=48, seed=3)
    assert engine.calls == [(60, 1), (8, 2)]  # 20 + 20 + 20 greedy prompts once, and the samples: one queue
    alone = [evaluate(engine.engine, a.task, a.problems, k=a.k, temperature=a.temperature, max_new_tokens=48, seed=3)
             for a in asked]
    for x, y in zip(together, alone):
        assert x.metrics.keys() == y.metrics.keys()
        for name in x.metrics:
            if name == "entropy":
                assert math.isclose(x.metrics[name], y.metrics[name], rel_tol=1e-5)
            else:
                assert x.metrics[name] == y.metrics[name], name
        assert [r["completion"] for r in x.rows] == [r["completion"] for r in y.rows]
