"""Which prompt groups the vote cannot teach: the test behind vote-aware dynamic sampling (``rlif.dynamic_sampling``).

A group teaches the vote nothing when its vote reward is the same for every member: all members in one cluster,
nobody answered, or (``majority`` with ``tie_policy: all``, ``share`` mode) every member ties. GDPO then gives that
component zero advantage in the group. The test runs the same :func:`cluster_vote` the advantage step runs, on the
answer keys the reward manager wrote, so it agrees with the step (except ``rlif.extractor.merge_equivalent_in_group``,
which merges keys only at advantage time; a group it would make unanimous is kept).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from ..config import VoteConfig
from .voting import cluster_vote


def uninformative_groups(
    group_ids: Sequence[Hashable], answer_keys: Sequence[Hashable | None], config: VoteConfig
) -> set[Hashable]:
    """Group ids whose members all get the same vote reward.

    Args:
        group_ids: ``[N]`` group id per response.
        answer_keys: ``[N]`` answer key per response (``None``/``""``: no answer).
        config: the vote settings the training step uses.
    """
    if not group_ids:
        return set()
    vote = cluster_vote(group_ids, answer_keys, config)
    num_groups = int(vote.group.max()) + 1
    low = torch.full((num_groups,), float("inf")).scatter_reduce(0, vote.group, vote.rewards, "amin")
    high = torch.full((num_groups,), float("-inf")).scatter_reduce(0, vote.group, vote.rewards, "amax")
    firsts = dict.fromkeys(group_ids)  # group index = order of first appearance (cluster_vote's convention)
    return {gid for gid, flat in zip(firsts, (low == high).tolist(), strict=True) if flat}
