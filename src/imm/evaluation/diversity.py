"""Collapse and diversity of K sampled completions per question (docs/method.md §3) [ours].

Every function takes the K texts (or answers) of ONE question; `mean_over_questions` averages a
per-question figure over a data set. Texts are split on whitespace: the figures describe what the
model wrote, independent of any tokenizer, so runs with different models stay comparable.

    distinct-n      unique n-grams / all n-grams among the K texts (Li et al., 2016)
    self-BLEU       mean BLEU-4 of each text against the other K-1 (Zhu et al., 2018, Texygen)
    unique answers  number of different final answers (no answer counts as one more)
    entropy         mean entropy (nats) of the sampling distribution per generated token
    EAD             expectation-adjusted distinct words: distinct words D among N over the number N uniform
                    draws from a vocabulary of V words would give, V·(1 − ((V−1)/V)^N), so longer texts are
                    not penalised (Liu et al., ACL 2022, "Rethinking and Refining the Distinct Metric").
                    V must be the same for every model compared: a model's own vocabulary would give a more
                    collapsed model a smaller V and a higher EAD. The report (imm.report.ead) takes the union
                    of the words of every model it compares; EAD is reported for words (n = 1) only, where the
                    reference defines it
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Hashable, Sequence

BLEU_MAX_N = 4
BLEU_EPSILON = 0.1  # nltk SmoothingFunction().method1: a zero n-gram precision counts as 0.1 matches


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams over all n-grams of the texts together; None when they hold no n-gram."""
    grams = [g for text in texts for g in ngrams(text.split(), n)]
    return len(set(grams)) / len(grams) if grams else None


def ead(texts: Sequence[str], n: int, vocabulary: int) -> float | None:
    """Expectation-adjusted distinct n-grams of the texts together; None when they hold no n-gram."""
    grams = [g for text in texts for g in ngrams(text.split(), n)]
    if not grams or vocabulary < 1:
        return None
    expected = vocabulary * (1 - ((vocabulary - 1) / vocabulary) ** len(grams))
    return len(set(grams)) / expected


def vocabulary_size(groups: Sequence[Sequence[str]]) -> int:
    """V of EAD: the different whitespace words in all texts of all questions."""
    return len({word for texts in groups for text in texts for word in text.split()})


def sentence_bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """BLEU-4 of one tokenised hypothesis against references, uniform weights, smoothing method1.

    Clipped n-gram counts against the maximum count in any reference; brevity penalty against the
    reference length closest to the hypothesis (ties: the shorter). Zero unigram matches -> 0."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, BLEU_MAX_N + 1):
        hyp = Counter(ngrams(hypothesis, n))
        limit: Counter = Counter()
        for ref in references:
            limit |= Counter(ngrams(ref, n))  # | keeps the larger count per n-gram
        matches, total = sum(min(c, limit[g]) for g, c in hyp.items()), max(1, sum(hyp.values()))
        if n == 1 and matches == 0:
            return 0.0
        log_precision += math.log((matches or BLEU_EPSILON) / total) / BLEU_MAX_N
    closest = min((len(r) for r in references), key=lambda r: (abs(r - len(hypothesis)), r))
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision)


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean BLEU of each text against all the others; None for fewer than two texts."""
    if len(texts) < 2:
        return None
    tokens = [t.split() for t in texts]
    scores = [sentence_bleu(tokens[i], tokens[:i] + tokens[i + 1:]) for i in range(len(tokens))]
    return sum(scores) / len(scores)


def unique_answers(keys: Sequence[Hashable]) -> int:
    """How many different final answers; `None` (no answer found) is one more answer."""
    return len(set(keys))


def token_entropy(mean_entropies: Sequence[float], num_tokens: Sequence[int]) -> float | None:
    """Entropy per generated token over several completions: their means weighted by length."""
    total = sum(num_tokens)
    return sum(e * n for e, n in zip(mean_entropies, num_tokens)) / total if total else None


def mean_over_questions(groups: Sequence[Sequence], figure: Callable[[Sequence], float | None]) -> float | None:
    """Mean of `figure(group)` over the groups where it is defined; None when it never is."""
    values = [v for v in (figure(g) for g in groups) if v is not None]
    return sum(values) / len(values) if values else None


def majority(keys: Sequence[Hashable]) -> int | None:
    """Index of the first sample carrying the most frequent non-None answer (ties: earliest)."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == best)
