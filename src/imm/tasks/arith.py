"""Seeded arithmetic word-problem families, the tasks of the built-in world: one in-domain, five out-of-domain.

Every family needs the same skill (chains of small-number arithmetic written as `a op b = c`) but
differs in what a model could merely memorise from the in-domain data:

    arith           in-domain: 2-3 steps of + and -, fixed templates, names and objects
    arith_vocab     unseen templates and vocabulary (shops, shelves, buses), 2-3 steps
    arith_long      the in-domain surface, but 4-5 steps
    arith_muldiv    multiplication and division
    arith_big       the in-domain surface with 3-digit numbers
    arith_symbolic  bare expressions: "12 + 7 - 5 = ?"

Splits are decided by a hash of the question text, so `pretrain`, `train` and `test` never share a
question (checked by exact text) and do not depend on the order questions are generated in.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass
from typing import Callable, Iterator

from imm.errors import UserError
from imm.tasks.base import Problem, Task

SPLIT_SIZES = {"train": 4000, "test": 500}
WORLD_SEED = 1234

NAMES = ["Tom", "Ann", "Sam", "Lily", "Ben", "Mia", "Jack", "Emma", "Leo", "Zoe", "Max", "Ella"]
OBJECTS = ["apples", "pens", "stickers", "marbles", "cards", "books", "coins", "shells", "toys", "cookies"]
GAIN = ["{p} buys {n} more.", "{p} finds {n} more.", "{p} gets {n} more from a friend.", "{p} wins {n} more."]
LOSS = ["{p} gives away {n}.", "{p} loses {n}.", "{p} sells {n}.", "{p} gives {n} to a friend."]

PLACES = [("on the shelf", "books"), ("on the bus", "people"), ("in the jar", "candies"), ("on the farm", "sheep")]
V_GAIN = ["Then {n} more {o} are put in.", "Later {n} {o} arrive.", "After that {n} new {o} join."]
V_LOSS = ["Then {n} {o} are taken out.", "Later {n} {o} leave.", "After that {n} {o} are removed."]


@dataclass(frozen=True)
class Chain:
    start: int
    steps: tuple[tuple[str, int], ...]  # (op, operand)

    def solution(self, answer_prefix: str = "") -> tuple[str, int]:
        value, parts = self.start, []
        for op, n in self.steps:
            new = {"+": value + n, "-": value - n, "*": value * n, "/": value // n}[op]
            parts.append(f"{value} {op} {n} = {new}.")
            value = new
        return " ".join(parts) + f" The answer is {value}.", value


def _add_sub_chain(rng: random.Random, n_steps: int, lo: int, hi: int) -> Chain:
    """A chain of + and - whose every intermediate value stays in [0, 2*hi]."""
    value = rng.randint(lo, hi)
    start, steps = value, []
    for _ in range(n_steps):
        n = rng.randint(lo, hi)
        op = "-" if (n <= value and rng.random() < 0.5) else "+"
        if op == "+" and value + n > 2 * hi:
            op, n = "-", rng.randint(1, value) if value >= 1 else 0
        value = value + n if op == "+" else value - n
        steps.append((op, n))
    return Chain(start, tuple(steps))


def _story(rng: random.Random, chain: Chain) -> str:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    p = "She" if name in {"Ann", "Lily", "Mia", "Emma", "Zoe", "Ella"} else "He"
    lines = [f"{name} has {chain.start} {obj}."]
    for op, n in chain.steps:
        lines.append(rng.choice(GAIN if op == "+" else LOSS).format(p=p, n=n))
    return " ".join(lines) + f" How many {obj} does {name} have now?"


def _arith(rng: random.Random) -> tuple[str, Chain]:
    chain = _add_sub_chain(rng, rng.randint(2, 3), 1, 30)
    return _story(rng, chain), chain


def _arith_long(rng: random.Random) -> tuple[str, Chain]:
    chain = _add_sub_chain(rng, rng.randint(4, 5), 1, 30)
    return _story(rng, chain), chain


def _arith_big(rng: random.Random) -> tuple[str, Chain]:
    chain = _add_sub_chain(rng, 2, 100, 400)
    return _story(rng, chain), chain


def _arith_vocab(rng: random.Random) -> tuple[str, Chain]:
    chain = _add_sub_chain(rng, rng.randint(2, 3), 1, 30)
    place, obj = rng.choice(PLACES)
    lines = [f"There are {chain.start} {obj} {place}."]
    for op, n in chain.steps:
        lines.append(rng.choice(V_GAIN if op == "+" else V_LOSS).format(n=n, o=obj))
    return " ".join(lines) + f" How many {obj} are {place} in the end?", chain


def _arith_muldiv(rng: random.Random) -> tuple[str, Chain]:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    boxes, each = rng.randint(2, 9), rng.randint(2, 9)
    if rng.random() < 0.5:
        n = rng.randint(1, boxes * each)
        chain = Chain(boxes, (("*", each), ("-", n)))
        q = f"{name} has {boxes} boxes with {each} {obj} in each box. {name} gives away {n} {obj}."
        return q + f" How many {obj} does {name} have left?", chain
    friends, extra = rng.randint(2, 9), rng.randint(1, 20)
    total = friends * each
    chain = Chain(total, (("/", friends), ("+", extra)))
    q = f"{name} shares {total} {obj} equally among {friends} friends. One friend then finds {extra} more."
    return q + f" How many {obj} does that friend have now?", chain


def _arith_symbolic(rng: random.Random) -> tuple[str, Chain]:
    chain = _add_sub_chain(rng, rng.randint(2, 3), 1, 30)
    expr = " ".join([str(chain.start)] + [f"{op} {n}" for op, n in chain.steps])
    return f"{expr} = ?", chain


# name -> (generator of one (question, chain), domain of the built-in default)
FAMILIES: dict[str, Callable[[random.Random], tuple[str, Chain]]] = {
    "arith": _arith,
    "arith_vocab": _arith_vocab,
    "arith_long": _arith_long,
    "arith_muldiv": _arith_muldiv,
    "arith_big": _arith_big,
    "arith_symbolic": _arith_symbolic,
}
IN_DOMAIN = "arith"


def split_of(question: str) -> str:
    """Deterministic split by text: 5% test, 15% train, 80% pretrain."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:4], "big") % 100
    return "test" if bucket < 5 else "train" if bucket < 20 else "pretrain"


def stream(family: str, split: str, seed: int = WORLD_SEED) -> Iterator[Problem]:
    """Endless distinct problems of one family and split, in a seeded order."""
    rng = random.Random(f"{seed}/{family}/{split}")
    seen: set[str] = set()
    while True:
        question, chain = FAMILIES[family](rng)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        solution, answer = chain.solution()
        yield Problem(family, f"{family}-{split}-{len(seen) - 1}", question, str(answer), solution)


class WorldTask(Task):
    """One family as a task; its `train` and `test` splits have fixed sizes (SPLIT_SIZES)."""

    answer_kind = "number"
    stop = ()  # the world's model ends each solution with its end-of-text token

    def __init__(self, name: str, path: str | None = None):
        if path is not None:
            raise UserError(f"task {name!r} is generated by the built-in world and takes no path; drop '={path}'")
        self.name = name

    def problems(self, split: str) -> list[Problem]:
        if split not in SPLIT_SIZES:
            raise UserError(f"task {self.name!r} has splits {', '.join(SPLIT_SIZES)}, not {split!r}")
        return list(_split(self.name, split))


@functools.lru_cache(maxsize=None)
def _split(family: str, split: str) -> tuple[Problem, ...]:
    """A family's split, made once per process (every stage of a run asks for it again)."""
    gen = stream(family, split)
    return tuple(next(gen) for _ in range(SPLIT_SIZES[split]))
