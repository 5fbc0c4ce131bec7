"""Coverage of the report's seed t-interval and false-claim rate of its rule, by simulation.

    .venv/bin/python benchmarks/coverage.py                  # prints the table
    .venv/bin/python benchmarks/coverage.py --update-docs    # and rewrites its section of docs/benchmarks.md

Each simulated experiment is what `imm report` reads: two models A and B answer the same P test problems in
each of S training seeds, and B − A per problem is +1, 0 or −1. The answers are drawn from a logistic model
with the two sources of variation the interval must count:

    logit P(A right on problem i, seed s) = a_i + g_i^A + u_s^A
    logit P(B right on problem i, seed s) = a_i + g_i^B + u_s^B + effect

a_i ~ N(0, 1.5²) a problem's difficulty, shared by both models; g_i ~ N(0, 0.7²) how much a model's own
training happens to suit problem i (fixed over seeds: the problems' variation); u_s ~ N(0, 0.25²) the
training seed's shift of a whole model (the seeds' variation, about ±5 points of accuracy, the spread the
README's default runs show). With effect 0 the two models are exchangeable, so the true difference is 0;
otherwise the true difference is the population mean of B − A, measured once on 4,000,000 draws.

The rule (imm.report.stats): a direction is claimed only where the 95% interval excludes zero. A false
claim is a claim at effect 0, or a claim of the wrong sign.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imm.report.stats import seed_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _log import write_section  # noqa: E402

DIFFICULTY, PROBLEM_SD, SEED_SD = 1.5, 0.7, 0.25
PROBLEMS = 300  # the default's test problems per task
TITLE = "Coverage of the report's seed intervals"


@dataclass(frozen=True)
class Outcome:
    seeds: int
    effect: float  # on the logit scale
    truth: float  # the true mean difference (accuracy fraction)
    coverage: float
    claims: float  # share of experiments where the rule claims a direction
    false_claims: float  # claims at effect 0, or of the wrong sign
    experiments: int


def simulate(seeds: int, effect: float, experiments: int, rng: np.random.Generator,
             problems: int = PROBLEMS) -> np.ndarray:
    """B − A per experiment, seed and problem: (experiments, seeds, problems) of −1, 0, +1."""
    shape = (experiments, 1, problems)
    difficulty = rng.normal(0, DIFFICULTY, shape)
    logit_a = difficulty + rng.normal(0, PROBLEM_SD, shape) + rng.normal(0, SEED_SD, (experiments, seeds, 1))
    logit_b = difficulty + rng.normal(0, PROBLEM_SD, shape) + rng.normal(0, SEED_SD, (experiments, seeds, 1)) + effect
    right_a = rng.random((experiments, seeds, problems)) < 1 / (1 + np.exp(-logit_a))
    right_b = rng.random((experiments, seeds, problems)) < 1 / (1 + np.exp(-logit_b))
    return right_b.astype(np.int8) - right_a.astype(np.int8)


def true_difference(effect: float, draws: int = 4_000_000, seed: int = 1) -> float:
    """E[P(B right) − P(A right)] over problems and seeds (0 at effect 0, by symmetry)."""
    if effect == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    base = rng.normal(0, DIFFICULTY, draws)
    spread = np.sqrt(PROBLEM_SD ** 2 + SEED_SD ** 2)
    a = 1 / (1 + np.exp(-(base + rng.normal(0, spread, draws))))
    b = 1 / (1 + np.exp(-(base + rng.normal(0, spread, draws) + effect)))
    return float(np.mean(b - a))


def outcome(seeds: int, effect: float, experiments: int, seed: int = 0) -> Outcome:
    rng = np.random.default_rng([seed, seeds, int(1000 * effect)])
    truth = true_difference(effect)
    found = [seed_interval(d) for d in simulate(seeds, effect, experiments, rng)]
    covered = np.mean([s.low <= truth <= s.high for s in found])
    claims = [s for s in found if s.claims]
    wrong = [s for s in claims if effect == 0 or (s.low > 0) != (truth > 0)]
    return Outcome(seeds, effect, truth, float(covered), len(claims) / experiments, len(wrong) / experiments, experiments)


def table(outcomes: list[Outcome]) -> list[str]:
    rows = ["| seeds | effect (logit) | true difference (pts) | coverage of the 95% interval | claims | false claims | experiments |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {o.seeds} | {o.effect:g} | {100 * o.truth:+.1f} | {100 * o.coverage:.1f}% | {100 * o.claims:.1f}% | "
             f"{100 * o.false_claims:.1f}% | {o.experiments} |" for o in outcomes]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    outcomes = [outcome(s, e, args.experiments) for e in (0.0, 0.1, 0.3) for s in (3, 5, 10)]
    rows = table(outcomes)
    se = 100 * np.sqrt(0.05 * 0.95 / args.experiments)
    note = (f"Simulated as the script's docstring says ({PROBLEMS} problems per seed; seed spread σ = {SEED_SD} and "
            f"problem spread σ = {PROBLEM_SD} on the logit scale). A rate near 5% is known to ±{se:.1f} points (one "
            f"binomial standard error at {args.experiments} experiments). Claims: the rule's power; false claims: "
            f"at effect 0 every claim is false.")
    if args.update_docs:
        write_section(TITLE, rows, note, command=".venv/bin/python benchmarks/coverage.py --update-docs",
                      setting="simulation, numpy only")
    else:
        print("\n".join(rows) + "\n\n" + note)


if __name__ == "__main__":
    main()
