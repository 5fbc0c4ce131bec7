"""The report's statistics on tiny hand-made inputs, every expected number derived by hand."""

import math

import pytest

from imm.evaluation.diversity import ead, vocabulary_size
from imm.report.stats import Paired, mcnemar_p, paired, paired_bootstrap, permutation_p, pooled


def test_paired_counts_what_only_one_model_solves():
    """A = [1,1,0,0,1], B = [1,0,1,1,1]: B alone solves problems 2 and 3, A alone problem 1 -> +1/5."""
    p = paired([True, True, False, False, True], [True, False, True, True, True])
    assert p == Paired(gained=2, lost=1, n=5)
    assert p.difference == pytest.approx(0.2)
    assert pooled([p, Paired(1, 3, 5)]) == Paired(3, 4, 10)


def test_mcnemar_exact_p_by_hand():
    """g=5, l=0: m=5, P[Bin(5,½) ≤ 0] = 1/32, two-sided 2/32 = 0.0625.
    g=1, l=3: m=4, P[Bin(4,½) ≤ 1] = (1+4)/16, two-sided 10/16 = 0.625. No discordant pair: 1."""
    assert mcnemar_p(5, 0) == pytest.approx(0.0625)
    assert mcnemar_p(1, 3) == pytest.approx(0.625)
    assert mcnemar_p(2, 2) == 1.0
    assert mcnemar_p(0, 0) == 1.0


def test_bootstrap_of_identical_differences_is_a_point():
    """Every problem gained: every resample's difference is +1, so the interval is [1, 1]."""
    assert paired_bootstrap([Paired(4, 0, 4)]) == (1.0, 1.0)


def test_bootstrap_percentiles_of_two_problems():
    """Differences {+1, 0}: a resample of 2 has mean 0 (¼), ½ (½) or 1 (¼); with 10,000 resamples the
    2.5% and 97.5% quantiles are 0 and 1 (a 25% mass at each end)."""
    assert paired_bootstrap([Paired(1, 0, 2)]) == (0.0, 1.0)


def test_stratified_bootstrap_keeps_each_seed_whole():
    """Seed 1 gains every problem (+1), seed 2 loses none and gains none (0): each stratum is a constant,
    so every pooled resample is (2 + 0) / 4 = 0.5."""
    assert paired_bootstrap([Paired(2, 0, 2), Paired(0, 0, 2)]) == (0.5, 0.5)


def test_permutation_p_exact_for_three_and_four_points():
    """n=3, ρ=1: of the 3! pairings ρ is 1, ½, ½, −½, −½, −1, so |ρ| ≥ 1 in 2 of 6: p = 1/3.
    n=4, ρ=−1: only the identity and the reversal reach |ρ| = 1 among 4! = 24: p = 1/12."""
    assert permutation_p([1, 2, 3], [10, 20, 30]) == pytest.approx(1 / 3)
    assert permutation_p([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(1 / 12)
    assert permutation_p([1, 2, 3], [5, 5, 5]) is None


def test_permutation_p_is_sampled_above_eight_points_and_stays_near_its_exact_value():
    """n=10, ρ=1: exact p = 2/10! ≈ 5.5e-7; 10,000 random pairings almost never reach it (p ≤ 0.001)."""
    assert permutation_p(list(range(10)), list(range(10))) <= 1e-3


def test_ead_by_hand():
    """["a b", "a c"], n=1: D=3 distinct of N=4 words, V=3: expected 3·(1 − (2/3)^4) = 195/81,
    EAD = 3 / (195/81) = 81/65. n=2: D=2 of N=2 bigrams: expected 3·(1 − (2/3)^2) = 5/3, EAD = 6/5."""
    texts = ["a b", "a c"]
    assert vocabulary_size([texts]) == 3
    assert ead(texts, 1, 3) == pytest.approx(81 / 65)
    assert ead(texts, 2, 3) == pytest.approx(6 / 5)
    assert ead(["a"], 2, 3) is None
    assert math.isclose(ead(["x y z"], 1, 1), 3.0)  # V=1: the expected count is 1, so EAD = D
