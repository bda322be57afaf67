"""Answer-level reward by cluster voting (TTRL's majority vote, EMPO's cluster share).

Within each prompt group, responses whose answer keys are equal form a cluster. With n_k the size of
cluster k, |g| the group size (answered or not) and k* the largest cluster(s):

    majority:  r_i = 1[i in C_{k*}]            (ties resolved by ``VoteConfig.tie_policy``)
    share:     r_i = n_{k(i)} / |g|
    gate:      r_i = 0 for the whole group if n_{k*} / |g| < min_majority_ratio

A response without an answer (key ``None``, or a string that is empty after stripping) never votes and
gets 0. Answer equivalence is decided upstream: equal keys mean equivalent answers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import VoteConfig
from .segments import factorize, segment_amax, segment_amin, segment_count, segment_sum


@dataclass(frozen=True)
class VoteResult:
    """Per-response rewards and per-group statistics of one vote. N responses, G groups, C clusters."""

    rewards: torch.Tensor
    """``[N]`` float32 vote reward."""
    in_majority: torch.Tensor
    """``[N]`` bool: the response belongs to a winning cluster (after the tie policy, before the gate)."""
    cluster: torch.Tensor
    """``[N]`` int64 cluster index in ``0..C-1`` (unique over the batch), -1 for no answer."""
    group: torch.Tensor
    """``[N]`` int64 group index in ``0..G-1``, in order of first appearance of each group id."""
    majority_ratio: torch.Tensor
    """``[G]`` float32 size of the largest cluster / group size (0 when nobody answered)."""
    num_clusters: torch.Tensor
    """``[G]`` int64 number of distinct answers in the group."""
    answer_rate: torch.Tensor
    """``[G]`` float32 fraction of the group with an answer."""


def _answer_codes(answer_keys: Sequence[Hashable | None]) -> torch.Tensor:
    """``[N]`` int64 code per answer key, equal codes for equal keys, -1 for no answer."""
    table: dict[Hashable, int] = {}
    codes = []
    for key in answer_keys:
        if key is None or (isinstance(key, str) and not key.strip()):
            codes.append(-1)
        else:
            codes.append(table.setdefault(key, len(table)))
    return torch.tensor(codes, dtype=torch.long)


def _winning_clusters(
    is_top: torch.Tensor, cl_group: torch.Tensor, cl_first: torch.Tensor, num_groups: int, tie_policy: str
) -> torch.Tensor:
    """``[C]`` bool: which of the top-size clusters win under ``tie_policy`` (see ``VoteConfig``)."""
    if tie_policy == "all":
        return is_top
    if tie_policy == "none":
        tops_in_group = segment_sum(is_top.long(), cl_group, num_groups)
        return is_top & (tops_in_group[cl_group] == 1)
    # "first": among the tied clusters, the one whose earliest member has the smallest batch index.
    sentinel = int(cl_first.max()) + 1 if cl_first.numel() else 0
    first_of_top = segment_amin(torch.where(is_top, cl_first, sentinel), cl_group, num_groups, sentinel)
    return is_top & (cl_first == first_of_top[cl_group])


def cluster_vote(
    group_ids: Sequence[Hashable] | np.ndarray | torch.Tensor,
    answer_keys: Sequence[Hashable | None],
    config: VoteConfig = VoteConfig(),
) -> VoteResult:
    """Vote within each group; vectorised over the whole batch (no loop per group).

    Args:
        group_ids: ``[N]`` group id per response (verl's ``uid``).
        answer_keys: ``[N]`` canonical answer key per response; ``None`` or ``""`` for no answer.
        config: vote mode, tie policy and gate.

    Returns:
        :class:`VoteResult`.

    Example (one group of 5: answers 7, 7, 3, none, 3 -> tie between two clusters of 2):
        >>> r = cluster_vote(["q"] * 5, ["7", "7", "3", None, "3"], VoteConfig(tie_policy="first"))
        >>> r.rewards.tolist(), r.majority_ratio.tolist(), r.num_clusters.tolist()
        ([1.0, 1.0, 0.0, 0.0, 0.0], [0.4000000059604645], [2])
    """
    group, num_groups = factorize(group_ids)
    answer = _answer_codes(answer_keys)
    if answer.numel() != group.numel():
        raise ValueError(f"got {group.numel()} group ids but {answer.numel()} answer keys; they must match")
    answered = answer >= 0
    num_answers = int(answer.max()) + 1 if answer.numel() else 0

    # A cluster is a distinct (group, answer) pair among answered responses.
    pair = group[answered] * max(num_answers, 1) + answer[answered]
    uniq_pairs, member_cluster, cl_size = torch.unique(pair, return_inverse=True, return_counts=True)
    num_clusters = uniq_pairs.numel()
    cl_group = uniq_pairs // max(num_answers, 1)
    positions = torch.arange(group.numel())[answered]
    cl_first = segment_amin(positions, member_cluster, num_clusters, fill=group.numel())

    group_size = segment_count(group, num_groups)
    top_size = segment_amax(cl_size, cl_group, num_groups, fill=0)
    is_top = cl_size == top_size[cl_group]
    winner = _winning_clusters(is_top, cl_group, cl_first, num_groups, config.tie_policy)

    majority_ratio = top_size.float() / group_size.float()
    if config.mode == "share":
        cl_reward = cl_size.float() / group_size[cl_group].float()
    else:
        cl_reward = winner.float()
    cl_reward = cl_reward * (majority_ratio >= config.min_majority_ratio)[cl_group]

    rewards = torch.zeros(group.numel(), dtype=torch.float32)
    rewards[answered] = cl_reward[member_cluster]
    in_majority = torch.zeros(group.numel(), dtype=torch.bool)
    in_majority[answered] = winner[member_cluster]
    cluster = torch.full((group.numel(),), -1, dtype=torch.long)
    cluster[answered] = member_cluster
    return VoteResult(
        rewards=rewards,
        in_majority=in_majority,
        cluster=cluster,
        group=group,
        majority_ratio=majority_ratio,
        num_clusters=segment_count(cl_group, num_groups),
        answer_rate=segment_sum(answered.float(), group, num_groups) / group_size.float(),
    )
