"""Policy loss ``rlif_kl_cov``: KL-Cov with device-only token selection, unbiased k (``verl_rlif.core.kl_cov``).

Selected by ``actor_rollout_ref.actor.policy_loss.loss_mode=rlif_kl_cov`` (or ``rlif_kl_cov_verl_rounding``
for verl's rounding of k; ``rlif_plugin.yaml`` picks the name from ``rlif.kl_cov.rounding``). Reads
verl's existing fields ``policy_loss.kl_cov_ratio`` (rho, a fraction) and ``policy_loss.ppo_kl_coef`` (beta);
``rlif_plugin.yaml`` sets both from ``rlif.kl_cov``. Aggregates with verl's
``agg_loss(**config.global_batch_info)``, so the loss does not change with the data-parallel size. verl's own
``kl_cov`` stays registered and untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, register_policy_loss

from verl_rlif.config import KL_COV_LOSS_MODES, KLCovConfig
from verl_rlif.core.kl_cov import kl_cov_token_losses

NAME = KL_COV_LOSS_MODES["stochastic"]
VERL_ROUNDING_NAME = KL_COV_LOSS_MODES["verl"]


def _loss(
    rounding: str,
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    config,
    rollout_is_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    if config is None or getattr(config, "policy_loss", None) is None:
        raise ValueError(
            f"policy loss {KL_COV_LOSS_MODES[rounding]!r} needs the actor config (actor_rollout_ref.actor)"
        )
    kl_cov = KLCovConfig(
        top_token_fraction=config.policy_loss.kl_cov_ratio, beta=config.policy_loss.ppo_kl_coef, rounding=rounding
    )
    loss_mat, metrics = kl_cov_token_losses(old_log_prob, log_prob, advantages, response_mask, kl_cov)
    if rollout_is_weights is not None:
        loss_mat = loss_mat * rollout_is_weights
    loss = agg_loss(loss_mat=loss_mat, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info)
    # verl's Metric turns these 0-dim tensors into floats when it aggregates them
    return loss, {
        "actor/ppo_kl": metrics["abs_log_ratio"],
        "rlif/kl_cov/selected_fraction": metrics["selected_fraction"],
        "rlif/kl_cov/selected_abs_log_ratio": metrics["selected_abs_log_ratio"],
    }


@register_policy_loss(NAME)
def rlif_kl_cov_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's ``PolicyLossFn`` contract: ``[B, T]`` micro-batch tensors in, ``(scalar loss, metrics)`` out.

    k is stochastically rounded with a draw derived from the micro-batch (``rlif.kl_cov.rounding=stochastic``).
    """
    args = (old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights)
    return _loss("stochastic", *args)


@register_policy_loss(VERL_ROUNDING_NAME)
def rlif_kl_cov_verl_rounding_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """As :func:`rlif_kl_cov_loss` with verl's k = max(1, int(rho N)) (``rlif.kl_cov.rounding=verl``)."""
    args = (old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights)
    return _loss("verl", *args)
