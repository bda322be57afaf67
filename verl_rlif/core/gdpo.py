"""GDPO: normalise each reward within its prompt group, weight, sum, whiten over the batch (arXiv 2601.05242).

For K reward components r_k, group g(i) of response i, weights w_k:

    z_k(i) = (r_k(i) - mean_g r_k) / (std_g r_k + eps)        (eq. 4; 0 if the group has zero variance)
    A(i)   = sum_k w_k z_k(i)                                    (eq. 5)
    Â(i)   = (A(i) - mu) / sqrt(sigma^2 + 1e-8)                  (eq. 6, batch whitening; ``whiten="none"``: Â = A)

Std convention: the within-group std is the unbiased sample std (Bessel's N-1, as ``torch.std`` and verl's
GRPO), with eps added to the std, not the variance. A group whose component is constant (including a
group of one response) contributes z = 0 for that component, never NaN and never a raw reward. "Constant" has
a tolerance relative to the component's scale: max_g r_k - min_g r_k <= zero_variance_rtol * std_batch r_k,
so values that differ only by GPU kernel nondeterminism are not blown up into +-1 advantages.
Batch whitening follows verl's ``masked_whiten`` (unbiased variance, 1e-8 inside the square root), with
mu and sigma^2 taken over responses (``whiten="response"``, each response counts once) or over tokens
(``whiten="token"``, response i counts ``len_i`` times: verl's ``gdpo`` estimator). ``whiten="none"`` skips
eq. 6: with one component of weight 1 that is exactly GRPO's advantage (verl's ``compute_grpo_outcome_advantage``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import GDPOConfig
from .segments import factorize, segment_amax, segment_amin, segment_count, segment_sum

WHITEN_VAR_EPS = 1e-8  # verl's masked_whiten constant


@dataclass(frozen=True)
class GDPOResult:
    """Advantages and per-component statistics. N responses, K components."""

    advantages: torch.Tensor
    """``[N]`` fp32 whitened advantage per response (broadcast it over the response's tokens)."""
    component_z: torch.Tensor
    """``[N, K]`` fp32 within-group z-scores before weighting."""
    component_mean: torch.Tensor
    """``[K]`` fp32 batch mean of each raw reward."""
    component_std: torch.Tensor
    """``[K]`` fp32 batch std (unbiased) of each raw reward."""
    zero_variance_group_fraction: torch.Tensor
    """``[K]`` fp32 fraction of groups in which the component is constant, within the tolerance (no signal)."""
    batch_std: torch.Tensor
    """0-dim fp32 whitening scale sqrt(sigma^2 + 1e-8) of eq. 6 (``whiten="none"``: the response-level one it
    would have divided by). Below 1 it means whitening enlarges the advantages, e.g. when many groups are constant."""


def _weighted_moments(values: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, sqrt(var + 1e-8))``, with mu and the Bessel-corrected var weighted by ``weight`` ``[N]``."""
    total = weight.sum()
    mu = (weight * values).sum() / total.clamp(min=1e-8)
    var = (weight * (values - mu) ** 2).sum() / (total - 1).clamp(min=1e-8)
    return mu, (var + WHITEN_VAR_EPS).sqrt()


def zero_variance_groups(rewards: torch.Tensor, codes: torch.Tensor, num_groups: int, rtol: float) -> torch.Tensor:
    """``[G, K]`` bool: the component is constant within the group, up to ``rtol`` times its batch scale.

    Constant means max_g r_k - min_g r_k <= rtol * std_batch r_k (the unbiased std of the component over the
    whole batch), so the test, like the z-score, is unchanged by an affine rescaling of the component.
    ``rtol=0`` is exact equality. A group of one is constant.
    """
    scale = rewards.std(dim=0, correction=1) if rewards.shape[0] > 1 else torch.zeros_like(rewards[0])
    spread = segment_amax(rewards, codes, num_groups, 0.0) - segment_amin(rewards, codes, num_groups, 0.0)
    return spread <= rtol * scale


def group_zscores(
    rewards: torch.Tensor, codes: torch.Tensor, num_groups: int, eps: float, zero_variance_rtol: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Within-group z-scores of each column (eq. 4).

    Args:
        rewards: ``[N, K]`` float.
        codes: ``[N]`` int64 dense group index.
        num_groups: G.
        eps: added to the group std.
        zero_variance_rtol: tolerance of the constancy test, see :func:`zero_variance_groups`.

    Returns:
        ``(z [N, K], zero_variance [G, K] bool)``.
    """
    count = segment_count(codes, num_groups).unsqueeze(-1)
    mean = segment_sum(rewards, codes, num_groups) / count
    dev = rewards - mean[codes]
    var = segment_sum(dev**2, codes, num_groups) / (count - 1).clamp(min=1)
    # Test constancy on the values, not on dev: a float mean of equal values need not equal them.
    zero_variance = zero_variance_groups(rewards, codes, num_groups, zero_variance_rtol)
    z = torch.where(zero_variance[codes], 0.0, dev / (var.sqrt()[codes] + eps))
    return z, zero_variance


def gdpo_advantages(
    rewards: torch.Tensor,
    group_ids: Sequence[Hashable] | np.ndarray | torch.Tensor,
    config: GDPOConfig = GDPOConfig(),
    response_mask: torch.Tensor | None = None,
) -> GDPOResult:
    """GDPO advantages for a batch, vectorised with segment operations.

    Args:
        rewards: ``[N, K]`` reward components (any float dtype, any device).
        group_ids: ``[N]`` prompt group per response (verl's ``uid``).
        config: weights (length K), eps, zero-variance tolerance and whitening level.
        response_mask: ``[N, T]`` bool or 0/1; required when ``config.whiten == "token"``.

    Returns:
        :class:`GDPOResult` on ``rewards.device``.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [N, K]; got shape {tuple(rewards.shape)}")
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty: GDPO needs at least one response")
    num_components = rewards.shape[1]
    if len(config.weights) != num_components:
        raise ValueError(
            f"gdpo.weights has {len(config.weights)} entries but there are {num_components} reward components"
        )
    if config.whiten == "token" and response_mask is None:
        raise ValueError("gdpo.whiten='token' needs response_mask (per-response token counts)")
    device = rewards.device
    codes, num_groups = factorize(group_ids)
    codes = codes.to(device)
    if codes.numel() != rewards.shape[0]:
        raise ValueError(f"got {codes.numel()} group ids for {rewards.shape[0]} responses")

    # float64 keeps eq. 4 scale-invariant for rewards of any magnitude; N x K is small.
    r = rewards.double()
    z, zero_variance = group_zscores(r, codes, num_groups, config.eps, config.zero_variance_rtol)
    combined = z @ torch.tensor(config.weights, dtype=torch.float64, device=device)
    if config.whiten == "token":
        weight = response_mask.sum(dim=-1).double()
    else:
        weight = torch.ones_like(combined)
    mu, batch_std = _weighted_moments(combined, weight)
    advantages = combined if config.whiten == "none" else (combined - mu) / batch_std
    return GDPOResult(
        advantages=advantages.float(),
        component_z=z.float(),
        component_mean=r.mean(dim=0).float(),
        component_std=r.std(dim=0, correction=1 if r.shape[0] > 1 else 0).float(),
        zero_variance_group_fraction=zero_variance.double().mean(dim=0).float(),
        batch_std=batch_std.float(),
    )
