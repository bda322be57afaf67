"""Advantage estimator ``rlif_gdpo``: GDPO over explicit reward components (``verl_rlif.core.gdpo``).

verl calls registered estimators with ``token_level_rewards``, ``response_mask``, ``index`` (uid) and
``config`` only; the reward components are not among them. So the estimator takes them as an extra keyword,
``reward_components [N, K]``: our ``rlif`` trainer passes it, and so can any custom pipeline. Called without
it (by stock verl), it raises and names the trainer mode to use instead of silently doing something else.
"""

from __future__ import annotations

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est

from verl_rlif.config import RLIFConfig
from verl_rlif.core.gdpo import GDPOResult, gdpo_advantages

NAME = "rlif_gdpo"


def gdpo_from_components(
    reward_components: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray, rlif: RLIFConfig
) -> GDPOResult:
    """GDPO with the ``rlif.gdpo`` settings; the token-whitening mode uses ``response_mask``."""
    return gdpo_advantages(reward_components, index, rlif.gdpo, response_mask=response_mask)


@register_adv_est(NAME)
def compute_rlif_gdpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config=None,
    reward_components: torch.Tensor | None = None,
    rlif: RLIFConfig | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(advantages, returns)``, both ``[N, T]``: the per-response GDPO advantage on each valid token.

    Args:
        token_level_rewards: ``[N, T]`` (unused: GDPO needs the components separately).
        response_mask: ``[N, T]``.
        index: ``[N]`` uid per response.
        config: verl's ``algorithm`` config (unused; settings come from ``rlif``).
        reward_components: ``[N, K]`` raw rewards, in the order of ``rlif.rewards``.
        rlif: the plugin settings (defaults when omitted).
    """
    if reward_components is None:
        raise ValueError(
            f"algorithm.adv_estimator={NAME} needs the separate reward components, which stock verl trainers do "
            f"not pass: set trainer.v1.trainer_mode=rlif (configs/rlif.yaml does), or call it with reward_components"
        )
    result = gdpo_from_components(reward_components, response_mask, index, rlif or RLIFConfig())
    advantages = result.advantages.to(response_mask.device).unsqueeze(-1) * response_mask
    return advantages, advantages
