"""The building blocks of task-vector merging: sparsifiers (which entries of one task vector to
keep) and sign consensus (which task vectors agree at each entry).

Each sparsifier takes one task vector δ (any shape, float32), zeroes the entries it drops IN
PLACE, and returns δ: the merge holds n task vectors of the largest tensor at once, so no
sparsifier makes a full-size temporary copy (work is done in chunks of CHUNK entries).
Selection by magnitude is exact-k with ties broken by the lower flat index, so results do not
depend on the sort algorithm.

Rescaling the kept entries (`rescale=True`):
  random drop (DARE, arXiv 2311.03099; IMM, arXiv 2503.02103): × 1/density, which keeps the
      expectation equal to δ (as in the DARE paper and mergekit before 0.1.5);
  magnitude-based and DELLA: × ‖δ‖₁ / ‖kept‖₁, as mergekit 0.1.5.
"""

from __future__ import annotations

from enum import Enum

import torch

CHUNK = 1 << 22  # entries per step of the chunked loops (16 MiB of float32)
_L1_EPS = 1e-7  # mergekit skips the L1 rescale when either norm is below this


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _l1(flat: torch.Tensor) -> torch.Tensor:
    return sum((flat[s].abs().sum(dtype=torch.float64) for s in chunks(flat.numel())),
               torch.zeros((), dtype=torch.float64, device=flat.device))


def _apply_mask(delta: torch.Tensor, mask: torch.Tensor, l1_rescale: bool) -> torch.Tensor:
    """δ ← mask ⊙ δ, then optionally × ‖δ‖₁/‖mask ⊙ δ‖₁ (computed in float64, applied in float32)."""
    flat, keep = delta.view(-1), mask.reshape(-1)
    before = _l1(flat) if l1_rescale else None
    for s in chunks(flat.numel()):
        flat[s].masked_fill_(~keep[s], 0)
    if l1_rescale:
        after = _l1(flat)
        if before >= _L1_EPS and after >= _L1_EPS:
            flat.mul_((before / after).to(flat.dtype))
    return delta


def _kth_largest_abs(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest |entry| of a flat tensor (1 ≤ k ≤ n), without sorting or copying it all.

    A strided sample brackets the answer; one chunked pass counts entries above the bracket and
    collects those inside; kthvalue runs on that small band. Falls back to kthvalue on all of
    |δ| when the bracket misses (never wrong, only slower)."""
    n = flat.numel()
    if n <= 1 << 20:
        return torch.kthvalue(flat.abs(), n - k + 1).values
    sample = flat[:: max(1, n // (1 << 18))].abs().sort().values
    rank = (1 - k / n) * (sample.numel() - 1)  # position of the answer in the ascending sample
    margin = 4 * int(sample.numel() ** 0.5) + 8
    lo = sample[max(0, int(rank) - margin)]
    hi = sample[min(sample.numel() - 1, int(rank) + margin)]
    above, band = 0, []
    for s in chunks(n):
        a = flat[s].abs()
        above += int(torch.count_nonzero(a > hi))
        band.append(a[(a >= lo) & (a <= hi)])
    band = torch.cat(band)
    if above < k <= above + band.numel():
        return torch.kthvalue(band, band.numel() - (k - above) + 1).values
    return torch.kthvalue(flat.abs(), n - k + 1).values


def top_k_mask(delta: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shape of δ) of its k largest-magnitude entries; ties go to the lower index."""
    flat = delta.reshape(-1)
    n = flat.numel()
    if k >= n or k <= 0:
        return torch.full(delta.shape, k > 0, dtype=torch.bool, device=delta.device)
    threshold = _kth_largest_abs(flat, k)
    mask = torch.empty(n, dtype=torch.bool, device=delta.device)
    budget = k  # entries still to keep; ties at the threshold take what the strict ones leave
    for s in chunks(n):
        mask[s] = flat[s].abs() > threshold
        budget -= int(torch.count_nonzero(mask[s]))
    for s in chunks(n):
        if budget <= 0:
            break
        tied = (flat[s].abs() == threshold).nonzero().squeeze(1)[:budget]
        mask[s][tied] = True
        budget -= tied.numel()
    return mask.view(delta.shape)


def magnitude(delta: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """Keep the ⌊density·n⌋ largest-magnitude entries (at least one), as TIES (arXiv 2306.01708)."""
    if density >= 1:
        return delta
    if density <= 0 or delta.numel() == 0:
        return delta.zero_()
    k = max(1, int(density * delta.numel()))
    return _apply_mask(delta, top_k_mask(delta, k), rescale)


def magnitude_outliers(delta: torch.Tensor, density: float, gamma: float = 0.01, rescale: bool = False) -> torch.Tensor:
    """Model Breadcrumbs (arXiv 2312.06795): drop the top γ·n magnitudes as outliers, then the
    smallest, keeping ⌊density·n⌋ entries (outlier removal shrinks if needed to keep that many)."""
    if density >= 1:
        return delta
    n = delta.numel()
    target = int(density * n)
    n_bottom = max(0, n - target - int(gamma * n))
    # ascending ranks [n_bottom, n_bottom + target) = top (n - n_bottom) minus top (n - n_bottom - target)
    mask = top_k_mask(delta, n - n_bottom) & ~top_k_mask(delta, n - n_bottom - target)
    return _apply_mask(delta, mask, rescale)


def random_drop(delta: torch.Tensor, density: float, generator: torch.Generator, rescale: bool = False) -> torch.Tensor:
    """DARE (arXiv 2311.03099): keep each entry independently with probability `density`, then
    (rescale) divide by density. Draws one uniform per entry in flat order, so applying it to
    consecutive pieces of δ with one generator gives the same result as to all of δ."""
    if density >= 1:
        return delta
    flat = delta.view(-1)
    for s in chunks(flat.numel()):
        drop = torch.rand(s.stop - s.start, generator=generator, device=flat.device) >= density
        flat[s].masked_fill_(drop, 0)
    return flat.div_(density).view(delta.shape) if rescale else delta


def della_magprune(delta: torch.Tensor, density: float, epsilon: float, generator: torch.Generator,
                   rescale: bool = False) -> torch.Tensor:
    """DELLA's MagPrune (arXiv 2406.11617): within each row, keep probability rises linearly with
    magnitude rank from density - ε (smallest) to density + ε (largest); rows in blocks."""
    if density >= 1:
        return delta
    rows = delta.view(1, -1) if delta.dim() < 2 else delta.view(delta.shape[0], -1)  # (R, C)
    cols = rows.shape[1]
    mask = torch.empty(rows.shape, dtype=torch.bool, device=delta.device)
    ramp = torch.arange(cols, dtype=torch.float32, device=delta.device) / max(cols - 1, 1)
    for s in chunks(rows.shape[0], max(1, CHUNK // max(cols, 1))):
        order = rows[s].abs().argsort(dim=1, stable=True)
        probs = torch.empty_like(rows[s]).scatter_(1, order, ramp.expand(order.shape).contiguous())
        mask[s] = torch.bernoulli(probs.mul_(2 * epsilon).add_(density - epsilon), generator=generator).bool()
    return _apply_mask(delta, mask.view(delta.shape), rescale)


def sum_rows(stacked: torch.Tensor) -> torch.Tensor:
    """Σᵢ stacked[i] for (n, c), added in order 0, 1, …: the same float32 result as a sum over
    dim 0, several times faster on CPU for small n."""
    total = stacked[0].clone()
    for row in stacked[1:]:
        total.add_(row)
    return total


def closed(kind: type[Enum], value: object) -> Enum:
    """`value` as a member of the closed set `kind`; ValueError naming the choices when it is not one."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {kind.__name__.lower()} {value!r}; choose one of "
                         f"{', '.join(m.value for m in kind)}") from None


class Consensus(str, Enum):
    """How TIES elects each entry's sign (arXiv 2306.01708); mergekit's `consensus_method`."""

    SUM = "sum"  # the sign of Σᵢ δᵢ (mass)
    COUNT = "count"  # the sign held by more task vectors


def sign_agreement(weighted: torch.Tensor, method: Consensus | str) -> torch.Tensor:
    """TIES sign election over stacked task vectors (n, *S) → bool mask (n, *S) of the entries
    whose sign equals the elected one (`Consensus`; an unknown name raises ValueError). A zero sum
    elects +; zero entries never agree."""
    method = closed(Consensus, method)
    sign = weighted.sign()
    total = sum_rows(weighted if method is Consensus.SUM else sign)
    elected = torch.where(total >= 0, 1.0, -1.0).to(sign.dtype)
    return sign == elected
