"""Vote-time merge: distinct answer keys of one group that are equivalent become one key.

Canonical keys catch the common equivalences; this catches the rest (``\\log 8`` vs ``3\\log 2``, ``2\\sin x\\cos x`` vs
``\\sin 2x``, ``e^{i\\pi}`` forms, ...) by pairwise math-verify checks among the few distinct keys
of each group, through the bounded, cached symbolic worker. Two exact keys (numbers and the canonical
polynomials of ``verl_rlif.answers.exact``, and sequences of them) are different values when they differ, so they
are never compared.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Hashable, Sequence

from verl_rlif.answers import symbolic
from verl_rlif.answers.normalize import canonical_math_key
from verl_rlif.sandbox.signature import KEY_PREFIX as CODE_KEY_PREFIX

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def _exact(key: str) -> bool:  # asked for every pair of a group: parse each key once
    return canonical_math_key(key)[1]


def merge_equivalent_keys(
    group_ids: Sequence[Hashable],
    keys: Sequence[str | None],
    equivalent: Callable[[str, str], bool] = symbolic.equivalent,
    budget_s: float | None = None,
) -> list[str | None]:
    """``keys`` with each group's equivalent distinct keys replaced by one representative (the most frequent,
    then the smallest).

    ``budget_s`` bounds the wall-clock time of the whole call (each check is bounded by the symbolic deadline,
    but a batch can hold many pairs): once spent, the remaining pairs are not compared and stay apart.
    """
    deadline = None if budget_s is None else time.monotonic() + budget_s
    skipped = 0

    def same(rep: str, key: str) -> bool:
        nonlocal skipped
        if (_exact(rep) and _exact(key)) or rep.startswith(CODE_KEY_PREFIX) or key.startswith(CODE_KEY_PREFIX):
            return False  # different values; behaviour hashes are not math
        if deadline is not None and time.monotonic() > deadline:
            skipped += 1
            return False
        return equivalent(rep, key)

    members: dict[Hashable, dict[str, int]] = {}
    for group, key in zip(group_ids, keys, strict=True):
        if key:
            counts = members.setdefault(group, {})
            counts[key] = counts.get(key, 0) + 1
    renames: dict[tuple[Hashable, str], str] = {}
    for group, counts in members.items():
        ordered = sorted(counts, key=lambda k: (-counts[k], k))
        representatives: list[str] = []
        for key in ordered:
            match = next((rep for rep in representatives if same(rep, key)), None)
            if match is None:
                representatives.append(key)
            else:
                renames[(group, key)] = match
    if skipped:
        logger.warning("verl-rlif: answer merge budget of %.1fs spent; %d key pairs not compared", budget_s, skipped)
    return [renames.get((group, key), key) if key else key for group, key in zip(group_ids, keys, strict=True)]
