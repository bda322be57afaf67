"""KL-Cov policy loss (Cui et al., "The Entropy Mechanism of RL for Reasoning LMs", arXiv 2505.22617, eq. 11).

Per valid token t of a micro-batch with N valid tokens:

    ratio_t = exp(log pi(y_t) - log pi_old(y_t))
    cov_t   = (A_t - mean A) * (log pi(y_t) - mean log pi)             (detached; means over valid tokens)
    L_t     = -A_t * ratio_t + beta * |log pi(y_t) - log pi_old(y_t)| * 1[t in I]

where I holds the k tokens with the largest cov_t. There is no PPO clipping (as in the reference
implementation and verl's ``kl_cov``). This module returns the per-token loss matrix; aggregation (and
data-parallel invariance) is the caller's job (verl's ``agg_loss``).

Rounding of k (why it differs from verl): verl takes k = max(1, int(rho*N)), which inflates the selected
fraction on small micro-batches (2,000 tokens at rho = 2e-4 select 1 token = 5e-4) and deflates it by flooring
in between (rho*N = 1.85 selects 1 token = 0.54 rho). Here k = floor(rho*N) + 1[u < frac(rho*N)] (stochastic
rounding), so E[k] = rho*N exactly at every micro-batch size, and k equals verl's whenever rho*N is a whole
number >= 1. The uniform u is not drawn from an RNG: it is a hash of the micro-batch's own inputs (the bits of
the old log-probs and advantages of its valid tokens, and their positions), so every rank holding the same
micro-batch (tensor, context or sequence parallel) computes the same u, with no communication and without
touching any RNG stream. ``rounding="verl"`` reproduces verl's max(1, int(rho*N)) instead.

Everything stays on the input's device: k is a device tensor, and the selection is a top-k up to the static
bound ceil(rho * B * T) followed by a comparison of ranks with k, so there is no ``.item()``, ``.cpu()``,
``nonzero`` or boolean indexing (no host synchronisation).
"""

from __future__ import annotations

import math

import torch

from ..config import KLCovConfig


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, 0.0).sum() / count


HASH_BITS = 24
"""The rounding draw u is a multiple of 2^-24: the low 24 bits of a sum of per-token hashes."""


def data_uniform(old_log_prob: torch.Tensor, advantages: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """0-dim float64 u in (0, 1), a deterministic function of the valid tokens' values and positions.

    Each valid token contributes the low 24 bits of its fp32 old log-prob and advantage (the mantissa bits,
    which vary between micro-batches as if random) mixed with its flat position; the sum modulo 2^24, scaled
    to (0, 1), is u. Integer arithmetic only, below 2^62, so it is exact and identical on every device.
    """
    mantissa = (1 << HASH_BITS) - 1

    def low_bits(values: torch.Tensor) -> torch.Tensor:
        return values.detach().float().contiguous().view(torch.int32).long() & mantissa

    position = torch.arange(valid.numel(), device=valid.device).view_as(valid)
    token_hash = (low_bits(old_log_prob) * 40503 + low_bits(advantages) * 2654435 + position * 9973) & mantissa
    total = torch.where(valid, token_hash, 0).sum() & mantissa
    return (total.double() + 0.5) / float(1 << HASH_BITS)


def top_token_count(
    top_token_fraction: float, num_valid: torch.Tensor, u: torch.Tensor | None, rounding: str = "stochastic"
) -> torch.Tensor:
    """k as a 0-dim float64 device tensor: floor(rho*N) + 1[u < frac(rho*N)], or verl's max(1, int(rho*N))."""
    k_exact = top_token_fraction * num_valid.to(torch.float64)
    if rounding == "verl":
        return torch.floor(k_exact).clamp(min=1.0)
    return torch.floor(k_exact) + (u < k_exact - torch.floor(k_exact)).to(torch.float64)


def select_top_cov_tokens(
    advantages: torch.Tensor,
    log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    top_token_fraction: float,
    old_log_prob: torch.Tensor | None = None,
    rounding: str = "stochastic",
) -> torch.Tensor:
    """Mask of the k valid tokens with the largest cov(A, log pi), k rounded from rho*N (module docstring).

    Args:
        advantages: ``[B, T]``.
        log_prob: ``[B, T]`` current policy log-probs (detached here).
        response_mask: ``[B, T]`` bool or 0/1.
        top_token_fraction: rho in (0, 1].
        old_log_prob: ``[B, T]`` the rollout-time log-probs, hashed with the advantages into the rounding draw
            (:func:`data_uniform`); ``None`` hashes ``log_prob`` instead.
        rounding: ``stochastic`` or ``verl``.

    Returns:
        ``[B, T]`` bool. Ties in cov at the cut are resolved by ``torch.topk``'s order (deterministic per device).
    """
    valid = response_mask.bool()
    num_valid = valid.sum()
    count = num_valid.clamp(min=1).to(torch.float32)
    adv = advantages.detach().float()
    logp = log_prob.detach().float()
    cov = (adv - _masked_mean(adv, valid, count)) * (logp - _masked_mean(logp, valid, count))
    cov = torch.where(valid, cov, -torch.inf).reshape(-1)

    u = None if rounding == "verl" else data_uniform(logp if old_log_prob is None else old_log_prob, adv, valid)
    k = top_token_count(top_token_fraction, num_valid, u, rounding)

    # k <= ceil(rho * numel), a bound known from the shape alone: top-k up to it, then keep the first k on device.
    k_max = min(cov.numel(), math.ceil(top_token_fraction * cov.numel()))
    top = torch.topk(cov, k_max, sorted=True).indices
    keep = torch.arange(k_max, device=cov.device) < k
    selected = torch.zeros(cov.numel(), dtype=torch.bool, device=cov.device).scatter_(0, top, keep)
    return selected.view_as(valid) & valid


def kl_cov_token_losses(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    config: KLCovConfig = KLCovConfig(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token KL-Cov loss matrix (see module docstring) and its metrics.

    Args:
        old_log_prob: ``[B, T]`` log pi_old(y_t) (from the rollout-time forward).
        log_prob: ``[B, T]`` log pi(y_t), with grad.
        advantages: ``[B, T]``.
        response_mask: ``[B, T]`` bool or 0/1.
        config: rho (``top_token_fraction``), beta and the rounding of k.

    Returns:
        ``(loss [B, T], metrics)``. ``loss`` is differentiable w.r.t. ``log_prob`` and is 0 on padding.
        ``metrics`` holds 0-dim device tensors: ``selected_fraction`` (k / N), ``selected_abs_log_ratio``
        (mean |log pi - log pi_old| over selected tokens, 0 if none) and ``abs_log_ratio`` (over all valid tokens).
    """
    valid = response_mask.bool()
    log_ratio = log_prob - old_log_prob
    abs_log_ratio = log_ratio.abs()
    selected = select_top_cov_tokens(
        advantages, log_prob, valid, config.top_token_fraction, old_log_prob=old_log_prob, rounding=config.rounding
    )
    loss = -advantages * torch.exp(log_ratio) + config.beta * abs_log_ratio * selected
    loss = torch.where(valid, loss, 0.0)

    count = valid.sum().clamp(min=1)
    num_selected = selected.sum()
    detached = abs_log_ratio.detach()
    metrics = {
        "selected_fraction": num_selected / count,
        "selected_abs_log_ratio": torch.where(selected, detached, 0.0).sum() / num_selected.clamp(min=1),
        "abs_log_ratio": torch.where(valid, detached, 0.0).sum() / count,
    }
    return loss, metrics
