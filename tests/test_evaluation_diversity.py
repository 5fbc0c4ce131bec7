"""Collapse and diversity figures pinned on toy strings, each value derived by hand in the docstring."""

from __future__ import annotations

import math

import pytest

from imm.evaluation import diversity


def test_distinct_n():
    """'a b a' + 'a b c': unigrams a b a a b c -> 3 unique / 6 = 0.5; bigrams ab ba ab bc -> 3/4;
    trigrams aba abc -> 2/2; no 4-gram at all -> None (undefined, not 0)."""
    texts = ["a b a", "a b c"]
    assert [diversity.distinct_n(texts, n) for n in (1, 2, 3, 4)] == [0.5, 0.75, 1.0, None]


def test_self_bleu_identical_texts_is_one():
    assert diversity.self_bleu(["a b c d", "a b c d", "a b c d"]) == pytest.approx(1.0)


def test_self_bleu_one_word_changed():
    """'a b c d' vs 'a b c e' (either way round): p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> 0.1/1 (method1);
    equal lengths -> no brevity penalty; BLEU = (3/4 * 2/3 * 1/2 * 0.1) ** (1/4) = 0.025 ** 0.25 = 0.39763."""
    assert diversity.self_bleu(["a b c d", "a b c e"]) == pytest.approx(0.025 ** 0.25)
    assert 0.025 ** 0.25 == pytest.approx(0.39763, abs=1e-5)


def test_self_bleu_brevity_penalty():
    """hyp 'a b' vs ref 'a b c d': p = 2/2, 1/1, 0.1/1, 0.1/1 -> 0.01 ** 0.25; short: BP = exp(1 - 4/2).
    hyp 'a b c d' vs ref 'a b': p = 2/4, 1/3, 0.1/2, 0.1/1 -> (1/12 * 0.01) ** 0.25; longer: BP = 1.
    self-BLEU = mean = (0.116334 + 0.169904) / 2 = 0.143119."""
    short = math.exp(1 - 2) * 0.01 ** 0.25
    long = (0.5 * (1 / 3) * 0.05 * 0.1) ** 0.25
    assert diversity.self_bleu(["a b", "a b c d"]) == pytest.approx((short + long) / 2)
    assert (short + long) / 2 == pytest.approx(0.143119, abs=1e-6)


def test_self_bleu_edge_cases():
    assert diversity.self_bleu(["x y", "p q"]) == 0.0  # no unigram in common
    assert diversity.self_bleu(["only one"]) is None  # needs two samples
    assert diversity.sentence_bleu([], [["a"]]) == 0.0


def test_unique_answers_entropy_majority():
    assert diversity.unique_answers(["5", "5", None, None]) == 2  # '5' and 'no answer'
    assert diversity.token_entropy([1.0, 3.0], [1, 3]) == pytest.approx(2.5)  # (1*1 + 3*3) / 4
    assert diversity.token_entropy([], []) is None
    assert diversity.majority(["5", None, "7", "7", "5"]) == 0  # tie 2-2: the earliest wins
    assert diversity.majority([None, "7"]) == 1
    assert diversity.majority([None, None]) is None


def test_mean_over_questions_skips_undefined():
    groups = [["a b"], ["c"]]  # bigram distinctness: 1/1 for the first, undefined for the second
    assert diversity.mean_over_questions(groups, lambda g: diversity.distinct_n(g, 2)) == 1.0
    assert diversity.mean_over_questions(groups, lambda g: diversity.distinct_n(g, 3)) is None
