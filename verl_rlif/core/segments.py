"""Segment (group-wise) reductions over a flat batch, without a Python loop per group.

Responses of one prompt form a group; verl tags them with a ``uid`` string. Every function here takes
``codes``: a LongTensor ``[N]`` of dense group indices in ``0..G-1`` (see :func:`factorize`), and reduces
along dim 0 with ``index_add_`` / ``scatter_reduce_``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch


def factorize(ids: Sequence[Hashable] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids to dense codes in order of first appearance.

    Args:
        ids: ``[N]`` hashable ids (uid strings, ints, ...) or an integer tensor/array.

    Returns:
        ``(codes [N] int64, G)`` with ``codes[i] == codes[j]`` iff ``ids[i] == ids[j]``.
    """
    if isinstance(ids, torch.Tensor) and not ids.is_floating_point():
        uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        return _first_appearance_order(inverse, len(uniq)), len(uniq)
    table: dict[Hashable, int] = {}
    # One dict lookup per response (not per group) is the only way to factorize arbitrary hashables.
    codes = [table.setdefault(key, len(table)) for key in np.asarray(ids, dtype=object).reshape(-1).tolist()]
    return torch.tensor(codes, dtype=torch.long), len(table)


def _first_appearance_order(inverse: torch.Tensor, num: int) -> torch.Tensor:
    """Relabel sorted-unique codes so that code 0 is the first id seen, 1 the second, ..."""
    n = inverse.numel()
    first = torch.full((num,), n, dtype=torch.long, device=inverse.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=inverse.device), reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(num, device=inverse.device)
    return rank[inverse]


def segment_sum(values: torch.Tensor, codes: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``out[g] = sum_{i: codes[i]=g} values[i]``; values ``[N, ...]`` -> ``[G, ...]``."""
    out = values.new_zeros((num_groups, *values.shape[1:]))
    return out.index_add_(0, codes, values)


def segment_count(codes: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Group sizes ``[G]`` (int64)."""
    return torch.bincount(codes, minlength=num_groups)


def segment_amax(values: torch.Tensor, codes: torch.Tensor, num_groups: int, fill: float) -> torch.Tensor:
    """Group maxima ``[G, ...]``; empty groups hold ``fill`` (which never takes part in the maximum)."""
    out = values.new_full((num_groups, *values.shape[1:]), fill)
    index = codes.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return out.scatter_reduce_(0, index, values, reduce="amax", include_self=False)


def segment_amin(values: torch.Tensor, codes: torch.Tensor, num_groups: int, fill: float) -> torch.Tensor:
    """Group minima ``[G, ...]``; empty groups hold ``fill``."""
    return -segment_amax(-values, codes, num_groups, -fill)
