"""One RLIF advantage step over a batch: vote + sequence self-certainty (or entropy) -> GDPO, plus the monitors.

This is everything the ``rlif`` trainer computes at advantage time, as one pure function, so it is tested
without verl. Ground truth (``correct``) enters only the monitoring metrics, never a reward or an advantage
(``tests/core/test_step.py`` proves changing it changes no advantage).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from ..config import RLIFConfig
from .gdpo import gdpo_advantages
from .self_certainty import masked_row_mean
from .voting import VoteResult, cluster_vote

TOKEN_REWARD_SIGNS = {"self_certainty": 1.0, "entropy": -1.0}
"""Components that are a sign times the masked mean of a per-token quantity over the response: self-certainty is
rewarded (Intuitor), entropy penalised (RENT). Their metrics log the unsigned mean (nats)."""


@dataclass(frozen=True)
class RLIFStep:
    """Result for N responses (rows outside ``include`` get zeros)."""

    advantages: torch.Tensor
    """``[N]`` fp32 GDPO advantage per response."""
    rewards: torch.Tensor
    """``[N, K]`` fp32 raw reward components, in the order of ``config.rewards``."""
    combined_reward: torch.Tensor
    """``[N]`` fp32 sum_k w_k r_k: the scalar reward verl logs as ``critic/score``."""
    metrics: dict[str, float]
    """``rlif/...`` metrics (see docs/configuration.md)."""


def _mean_std(prefix: str, values: torch.Tensor) -> dict[str, float]:
    std = values.std(correction=1).item() if values.numel() > 1 else 0.0
    return {f"{prefix}/mean": values.mean().item() if values.numel() else 0.0, f"{prefix}/std": std}


def monitor_metrics(vote: VoteResult, correct: Sequence[float | None] | None) -> dict[str, float]:
    """Pseudo-label and ground-truth accuracy, where ground truth exists (monitoring only)."""
    if correct is None:
        return {}
    known = torch.tensor([c is not None for c in correct])
    if not known.any():
        return {}
    acc = torch.tensor([float(c) if c is not None else 0.0 for c in correct])
    num_groups = vote.majority_ratio.numel()
    group_has_truth = torch.zeros(num_groups).index_add_(0, vote.group, known.float()) > 0
    # per group: accuracy of its winning (majority) responses; no winner means a wrong pseudo-label
    winners = vote.in_majority.float()
    winner_count = torch.zeros(num_groups).index_add_(0, vote.group, winners)
    winner_correct = torch.zeros(num_groups).index_add_(0, vote.group, winners * acc)
    pseudo_label_acc = torch.where(winner_count > 0, winner_correct / winner_count.clamp(min=1), 0.0)
    return {
        "rlif/ground_truth_acc": acc[known].mean().item(),
        "rlif/pseudo_label_acc": pseudo_label_acc[group_has_truth].mean().item(),
    }


def vote_metrics(vote: VoteResult, correct: Sequence[float | None] | None) -> dict[str, float]:
    """The vote's ``rlif/`` metrics, and the ground-truth monitors where ground truth exists."""
    return {
        **_mean_std("rlif/vote_reward", vote.rewards),
        "rlif/majority_ratio/mean": vote.majority_ratio.mean().item(),
        "rlif/clusters_per_group/mean": vote.num_clusters.float().mean().item(),
        "rlif/answer_rate/mean": vote.answer_rate.mean().item(),
        **monitor_metrics(vote, correct),
    }


def rlif_step(
    group_ids: Sequence[Hashable],
    answer_keys: Sequence[Hashable | None],
    token_self_certainty: torch.Tensor | None,
    response_mask: torch.Tensor,
    config: RLIFConfig,
    include: torch.Tensor | None = None,
    correct: Sequence[float | None] | None = None,
    token_entropy: torch.Tensor | None = None,
    vote_rewards: torch.Tensor | None = None,
) -> RLIFStep:
    """Rewards, advantages and metrics for one batch.

    Args:
        group_ids: ``[N]`` prompt uid per response.
        answer_keys: ``[N]`` canonical answer keys (``None``/``""``: no answer).
        token_self_certainty: ``[N, T]`` per-token self-certainty of the response tokens (needed when
            ``"self_certainty" in config.rewards``).
        response_mask: ``[N, T]`` bool or 0/1.
        config: the plugin settings.
        include: ``[N]`` bool; rows outside it (verl's padding rows) take no part and get zeros.
        correct: ``[N]`` 1.0/0.0 ground-truth correctness or None per response; metrics only.
        token_entropy: ``[N, T]`` per-token entropy of the policy (nats) over the response tokens (needed when
            ``"entropy" in config.rewards``; the reward is minus its masked mean, RENT).
        vote_rewards: ``[N]`` vote rewards already computed over more responses than these rows (voting on more
            samples than trained, ``rlif.vote.trained_per_prompt``). Used instead of voting over these rows; the
            vote metrics are then the caller's (this function cannot see the other voters).

    Returns:
        :class:`RLIFStep`.
    """
    num = len(group_ids)
    include = torch.ones(num, dtype=torch.bool) if include is None else include.bool().cpu()
    rows = include.nonzero().squeeze(-1).tolist()
    pick = lambda seq: [seq[i] for i in rows]  # noqa: E731
    mask = response_mask[include.to(response_mask.device)]

    if vote_rewards is None:
        vote = cluster_vote(pick(group_ids), pick(answer_keys), config.vote)
        components = {"vote": vote.rewards}
        metrics = vote_metrics(vote, pick(correct) if correct is not None else None)
    else:
        components = {"vote": vote_rewards.float().cpu()[include]}
        metrics = {}
    per_token = {"self_certainty": token_self_certainty, "entropy": token_entropy}
    for name in config.rewards:
        if name not in TOKEN_REWARD_SIGNS:
            continue
        tokens = per_token[name]
        if tokens is None:
            raise ValueError(f"rlif.rewards includes {name} but no per-token {name.replace('_', '-')} was given")
        sequence = masked_row_mean(tokens[include.to(tokens.device)], mask).cpu()
        components[name] = TOKEN_REWARD_SIGNS[name] * sequence
        metrics.update(_mean_std(f"rlif/{name}", sequence))

    rewards = torch.stack([components[name] for name in config.rewards], dim=1)
    gdpo = gdpo_advantages(rewards, pick(group_ids), config.gdpo, response_mask=mask.cpu())
    for name, fraction in zip(config.rewards, gdpo.zero_variance_group_fraction.tolist(), strict=True):
        metrics[f"rlif/zero_variance_groups/{name}"] = fraction
    metrics["rlif/gdpo/batch_std"] = gdpo.batch_std.item()

    advantages = torch.zeros(num)
    advantages[include] = gdpo.advantages
    all_rewards = torch.zeros(num, rewards.shape[1])
    all_rewards[include] = rewards
    combined = all_rewards @ torch.tensor(config.gdpo.weights, dtype=torch.float32)
    return RLIFStep(advantages=advantages, rewards=all_rewards, combined_reward=combined, metrics=metrics)
