"""The report's rule under simulation (benchmarks/coverage.py): at zero effect it claims a direction in at most
5% of experiments, at 5 and at 10 seeds.

With R = 1000 simulated experiments the false-claim rate is a binomial share: were the true rate exactly 5%,
its standard error would be √(0.05·0.95/1000) = 0.69 points, and the observed rate would exceed
5% + 2.33·0.69 = 6.6% with probability 1% (one-sided). So the test allows 6.6%: it fails for a rule whose
true rate is 5% one time in a hundred draws at most, and for a rule of pooled intervals (≈30% here) always.
The draws are seeded, so the test is deterministic."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import coverage  # noqa: E402

EXPERIMENTS = 1000
BOUND = 0.05 + 2.33 * (0.05 * 0.95 / EXPERIMENTS) ** 0.5  # 0.066


@pytest.mark.parametrize("seeds", [5, 10])
def test_the_rule_claims_a_direction_at_zero_effect_at_most_five_percent_of_the_time(seeds):
    found = coverage.outcome(seeds, 0.0, EXPERIMENTS)
    assert found.truth == 0.0 and found.false_claims == found.claims
    assert found.false_claims <= BOUND, found
    assert found.coverage >= 1 - BOUND


def test_the_simulation_can_tell_an_effect_from_none():
    """A check that could not fail would pass a rule that never claims: with a true effect of 0.6 on the logit
    scale (about 10 points) and 10 seeds the rule claims the right direction in most experiments."""
    found = coverage.outcome(10, 0.6, 200)
    assert found.truth > 0.05 and found.claims > 0.5 and found.false_claims == 0.0
