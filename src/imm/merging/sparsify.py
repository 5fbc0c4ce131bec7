"""The building blocks of task-vector merging: sparsifiers (which entries of one task vector to
keep) and sign consensus (which task vectors agree at each entry).

Each sparsifier takes one task vector δ (any shape, float32) and returns a tensor of the same
shape; entries it drops are zero. Selection by magnitude is exact-k with ties broken by the lower
flat index, so results do not depend on the sort algorithm.

Rescaling the kept entries:
  "l1"      — multiply by ‖δ‖₁ / ‖mask ⊙ δ‖₁ (mergekit 0.1.5's `rescale: true`)
  "density" — multiply by 1/density, DARE's unbiased rescale (Yu et al., arXiv 2311.03099), used by
              IMM (arXiv 2503.02103) with density 1 - p = 0.8
"""

from __future__ import annotations

import torch

Rescale = str | None  # None | "l1" | "density"
_L1_EPS = 1e-7  # mergekit skips the rescale when either norm is below this


def _rescale(delta: torch.Tensor, kept: torch.Tensor, rescale: Rescale, density: float) -> torch.Tensor:
    """`kept` = mask ⊙ δ, already computed; returns it rescaled in place."""
    if rescale == "density":
        return kept.div_(density)
    if rescale == "l1":
        before, after = delta.abs().sum(), kept.abs().sum()
        if before >= _L1_EPS and after >= _L1_EPS:
            kept.mul_(before / after)
    return kept


def _kth_largest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest entry of a flat tensor (1 ≤ k ≤ n), without a full sort.

    A strided sample brackets the answer; only the entries inside the bracket go to kthvalue.
    Falls back to kthvalue on everything when the bracket misses (never wrong, only slower)."""
    n = values.numel()
    if n <= 1 << 20:
        return torch.kthvalue(values, n - k + 1).values
    sample, _ = values[:: max(1, n // (1 << 18))].sort()
    rank = (1 - k / n) * (sample.numel() - 1)  # position of the answer in the ascending sample
    margin = 4 * int(sample.numel() ** 0.5) + 8
    lo = sample[max(0, int(rank) - margin)]
    hi = sample[min(sample.numel() - 1, int(rank) + margin)]
    above = int((values > hi).sum())
    band = values[(values >= lo) & (values <= hi)]
    if above < k <= above + band.numel():
        return torch.kthvalue(band, band.numel() - (k - above) + 1).values
    return torch.kthvalue(values, n - k + 1).values


def top_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k largest entries of a flat tensor; ties go to the lower index."""
    n = values.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=values.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=values.device)
    threshold = _kth_largest(values, k)
    mask = values > threshold
    missing = k - int(mask.sum())
    if missing > 0:
        tied = (values == threshold).nonzero().squeeze(1)[:missing]
        mask[tied] = True
    return mask


def magnitude(delta: torch.Tensor, density: float, rescale: Rescale = None) -> torch.Tensor:
    """Keep the ⌊density·n⌋ largest-magnitude entries (at least one), as TIES (arXiv 2306.01708)."""
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return torch.zeros_like(delta)
    k = max(1, int(density * delta.numel()))
    mask = top_k_mask(delta.abs().flatten(), k).view_as(delta)
    return _rescale(delta, delta * mask, rescale, density)


def magnitude_outliers(
    delta: torch.Tensor, density: float, gamma: float = 0.01, rescale: Rescale = None
) -> torch.Tensor:
    """Model Breadcrumbs (arXiv 2312.06795): drop the top γ·n magnitudes as outliers, then the
    smallest, keeping ⌊density·n⌋ entries (outlier removal shrinks if needed to keep that many)."""
    if density >= 1:
        return delta
    n = delta.numel()
    target = int(density * n)
    n_top = int(gamma * n)
    n_bottom = max(0, n - target - n_top)
    flat = delta.abs().flatten()
    # ascending ranks [n_bottom, n_bottom + target) = top (n - n_bottom) minus top (n - n_bottom - target)
    mask = top_k_mask(flat, n - n_bottom) & ~top_k_mask(flat, n - n_bottom - target)
    return _rescale(delta, delta * mask.view_as(delta), rescale, density)


def random_drop(
    delta: torch.Tensor, density: float, generator: torch.Generator, rescale: Rescale = None
) -> torch.Tensor:
    """DARE (arXiv 2311.03099): keep each entry independently with probability `density`."""
    if density >= 1:
        return delta
    keep = torch.rand(delta.shape, generator=generator, device=delta.device) < density
    return _rescale(delta, delta * keep, rescale, density)


def della_magprune(
    delta: torch.Tensor, density: float, epsilon: float, generator: torch.Generator, rescale: Rescale = None
) -> torch.Tensor:
    """DELLA's MagPrune (arXiv 2406.11617): within each row, keep probability rises linearly with
    magnitude rank from density - ε (smallest) to density + ε (largest)."""
    if density >= 1:
        return delta
    rows = delta.reshape(1, -1) if delta.dim() < 2 else delta.reshape(delta.shape[0], -1)  # (R, C)
    order = rows.abs().argsort(dim=1, stable=True)
    ranks = torch.empty_like(rows)
    ranks.scatter_(1, order, torch.arange(rows.shape[1], dtype=rows.dtype, device=rows.device).expand_as(rows))
    span = max(rows.shape[1] - 1, 1)
    probs = (density - epsilon) + (ranks / span) * (2 * epsilon)
    keep = torch.bernoulli(probs, generator=generator).view_as(delta)
    return _rescale(delta, delta * keep, rescale, density)


def sign_agreement(weighted: torch.Tensor, method: str) -> torch.Tensor:
    """TIES sign election over stacked task vectors (n, *S) → bool mask (n, *S) of the entries
    whose sign equals the elected one. "sum": the sign of Σᵢ δᵢ (mass); "count": the sign held by
    more task vectors. A zero sum elects +; zero entries never agree."""
    sign = weighted.sign()
    total = weighted.sum(dim=0) if method == "sum" else sign.sum(dim=0)
    elected = torch.where(total >= 0, 1.0, -1.0).to(sign.dtype)
    return sign == elected
