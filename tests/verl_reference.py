"""Call verl 0.9.1's own implementations with real verl objects: the parity references for tests and benchmarks.

Imported by the parity tests (``tests/`` is on pytest's ``pythonpath``) and by ``bench/`` scripts.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf


def verl_gdpo(rewards: torch.Tensor, uids: np.ndarray, response_mask: torch.Tensor, weights) -> torch.Tensor:
    """verl's ``gdpo`` estimator on per-component rewards ``[N, K]``; returns token advantages ``[N, T]``.

    verl reads each component from ``non_tensor_batch`` and places it at the last valid response token, which
    it finds from ``attention_mask`` after the prompt; the mask must be int (verl indexes with its sum).
    """
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    num, num_components = rewards.shape
    prompt_len = 2
    keys = [f"r{k}" for k in range(num_components)]
    config = OmegaConf.create({"gdpo_reward_keys": keys, "gdpo_reward_weights": list(weights)})
    batch = {
        "prompts": torch.zeros(num, prompt_len, dtype=torch.long),
        "attention_mask": torch.cat([torch.ones(num, prompt_len, dtype=torch.long), response_mask.long()], dim=1),
    }
    non_tensor_batch = {key: rewards[:, k].numpy() for k, key in enumerate(keys)}
    advantages, _ = get_adv_estimator_fn("gdpo")(
        token_level_rewards=torch.zeros(response_mask.shape),
        response_mask=response_mask,
        index=uids,
        config=config,
        non_tensor_batch=non_tensor_batch,
        batch=batch,
    )
    return advantages


def verl_actor_config(kl_cov_ratio: float, ppo_kl_coef: float):
    """A real verl ``ActorConfig`` selecting ``kl_cov`` with the given rho and beta, for one data-parallel rank."""
    from verl.workers.config.actor import ActorConfig, PolicyLossConfig

    return ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode="token-mean",
        policy_loss=PolicyLossConfig(loss_mode="kl_cov", kl_cov_ratio=kl_cov_ratio, ppo_kl_coef=ppo_kl_coef),
        global_batch_info={"dp_size": 1},
    )


def verl_kl_cov(old_log_prob, log_prob, advantages, response_mask, config) -> torch.Tensor:
    """verl's ``kl_cov`` policy loss (token-mean over the micro-batch)."""
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    loss, _ = get_policy_loss_fn("kl_cov")(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=response_mask,
        loss_agg_mode="token-mean",
        config=config,
    )
    return loss


def random_response_mask(num: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``[num, length]`` int64 masks of left-aligned responses with 1..length valid tokens."""
    lengths = torch.randint(1, length + 1, (num,), generator=generator)
    return (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).long()
