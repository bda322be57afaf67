"""Voting on more responses than are trained on (TTRL: 64 responses vote, 32 of them are trained on).

The vote runs over every response of a group; training then keeps a uniformly random subset of
``trained_per_prompt`` responses per group (all of a smaller group), drawn from a seeded generator, so a step
is reproducible given its seed. The kept rows keep the reward the vote over all voters gave them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from .segments import factorize


def select_trained_rows(
    group_ids: Sequence[Hashable] | np.ndarray | torch.Tensor, trained_per_prompt: int, seed: int
) -> torch.Tensor:
    """``[M]`` int64 sorted indices of the rows to train on: min(|g|, trained_per_prompt) random rows of each group g.

    Vectorised: every row draws a uniform key; rows are ranked within their group by it, and ranks below
    ``trained_per_prompt`` are kept. The same ``seed`` and ``group_ids`` give the same rows on any machine.
    """
    codes, num_groups = factorize(group_ids)
    generator = torch.Generator().manual_seed(seed)
    keys = torch.rand(codes.numel(), generator=generator, dtype=torch.float64)
    order = torch.argsort(codes.double() + keys)  # by group, then by random key within the group
    counts = torch.bincount(codes, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(codes.numel()) - starts[codes[order]]
    return (rank < trained_per_prompt).nonzero().squeeze(-1)


def rows_per_group(group_ids: Sequence[Hashable] | np.ndarray | torch.Tensor) -> float:
    """Mean number of rows per group (0 for no rows): the ``rlif/vote/*_per_prompt`` metrics."""
    codes, num_groups = factorize(group_ids)
    return codes.numel() / num_groups if num_groups else 0.0
