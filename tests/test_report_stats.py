"""The report's statistics on tiny hand-made inputs, every expected number derived by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imm.evaluation.diversity import ead, vocabulary_size
from imm.report.stats import (Paired, mcnemar_p, paired, paired_bootstrap, permutation_p, pooled, problems_hold_zero,
                              seed_interval, seeds_needed, t_cdf, t_quantile)


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


def test_t_distribution_matches_the_printed_tables():
    """t(0.975, df) from any table: 12.706, 4.303, 3.182, 2.776, 2.262 (df 1, 2, 3, 4, 9). df = 1 is Cauchy:
    P(T ≤ 1) = ½ + atan(1)/π = 0.75."""
    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 3, 4, 9)] == [12.706, 4.303, 3.182, 2.776, 2.262]
    assert t_cdf(1.0, 1) == pytest.approx(0.75) and t_cdf(-1.0, 1) == pytest.approx(0.25)
    assert t_cdf(0.0, 6) == pytest.approx(0.5)


def test_seed_interval_counts_the_seeds_and_the_problems():
    """Three seeds, four problems, b − a:  s1 [1,0,0,0], s2 [1,1,0,0], s3 [0,0,0,0].
    Per seed d = 1/4, 1/2, 0: mean 1/4, var(d) = (0 + 1/16 + 1/16)/2 = 1/16, so var/S = 1/48.
    Per problem c = 2/3, 1/3, 0, 0: Σ(c − ¼)² = (25 + 1 + 9 + 9)/144 = 11/36, var(c) = 11/108, /P = 11/432.
    Residuals x − d_s − c_i + ¼: s1 [1/3, −1/3, 0, 0], s2 [1/12, 5/12, −1/4, −1/4], s3 [−5/12, −1/12, 1/4, 1/4];
    Σ² = 2/9 + 11/36 + 11/36 = 5/6 over (S−1)(P−1) = 6: MS_rest = 5/36, /(SP) = 5/432.
    Problems' share 11/432 − 5/432 = 1/72; se² = 1/48 + 1/72 = 5/144; half-width 4.302653·√(5/144) = 0.80175;
    the upper end 1.05 is cut to 1, the largest possible difference of two accuracies. t = ¼/√(5/144) =
    1.34164, and with df = 2 P(|T| ≤ t) = t/√(2 + t²), so p = 1 − 1.34164/√3.8 = 0.3117."""
    values = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    s = seed_interval(values)
    half = 4.302652729749464 * math.sqrt(5 / 144)
    assert (s.mean, s.seeds) == (0.25, 3)
    assert (s.low, s.high) == (pytest.approx(0.25 - half), 1.0)
    assert s.seed_variance == pytest.approx(1 / 16) and s.problem_variance == pytest.approx(1 / 72)
    t = 0.25 / math.sqrt(5 / 144)
    assert not s.claims and s.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    with pytest.raises(ValueError, match="two seeds"):
        seed_interval(values[:1])


@settings(deadline=None)  # no wall-clock limit: a loaded machine must not fail a correct property
@given(st.lists(st.lists(st.integers(-1, 1), min_size=5, max_size=5), min_size=3, max_size=3))
def test_a_three_seed_interval_holds_every_seeds_own_difference(rows):
    """max |d_s − mean| ≤ s·(S−1)/√S = 1.155·s and the half-width is at least t(0.975, 2)·s/√3 = 2.484·s."""
    s = seed_interval(np.array(rows, dtype=float))
    for row in rows:
        assert s.low - 1e-12 <= sum(row) / len(row) <= s.high + 1e-12


def test_seeds_needed_solves_for_the_smallest_sufficient_n():
    """Mean 0.75, no seed spread, problems' share 1/16 (se 0.25): a claim needs t(0.975, n − 1) < 3, first met
    at n − 1 = 4 (0.25·2.776 = 0.694; 0.25·3.182 = 0.796 at n = 4). With seed variance 1 as well,
    t(0.975, n − 1)·√(1/n + 1/16) < 0.75 first holds at n = 17 (√(0.1213)·2.120 = 0.738; at n = 16
    √(0.125)·2.131 = 0.7536). Mean 0.1: even no seed spread leaves t·0.25 ≥ 1.96·0.25 = 0.49 > 0.1."""
    assert seeds_needed(0.75, 0.0, 1 / 16) == 5
    assert seeds_needed(0.75, 1.0, 1 / 16) == 17
    assert seeds_needed(0.1, 0.0, 1 / 16) is None


def test_only_a_share_of_the_problems_too_wide_for_any_seeds_is_blamed_on_the_problems():
    """Mean 0.1 with problems' share 1/16: z(0.975)·0.25 = 0.49 ≥ 0.1, so no number of seeds helps. Mean 0.75
    with the same share: 0.49 < 0.75, so seeds could (17 with seed variance 1, above); mean 0.3 with seed
    variance 100: 0.49 > 0.3 holds too, but mean 0.6 with seed variance 100 needs more than 100 seeds
    (t·√(100/100 + 1/16) ≥ 1.98·1.03 = 2.04 > 0.6) while the problems alone (0.49) would not hold zero."""
    assert problems_hold_zero(0.1, 1 / 16) and problems_hold_zero(0.3, 1 / 16)
    assert not problems_hold_zero(0.75, 1 / 16) and not problems_hold_zero(0.6, 1 / 16)
    assert seeds_needed(0.6, 100.0, 1 / 16) is None
