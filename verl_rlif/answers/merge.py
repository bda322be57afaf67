"""Vote-time merge: distinct answer keys of one group that are equivalent become one key.

Canonical keys catch the common equivalences; this catches the rest (``x^2-1`` vs ``(x-1)(x+1)`` when
simplification differs, ``e^{i\\pi}`` forms, ...) by pairwise math-verify checks among the few distinct keys
of each group, through the bounded, cached symbolic worker. Two exact keys (numbers and the canonical
polynomials of ``verl_rlif.answers.exact``, and sequences of them) are different values when they differ, so they
are never compared.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from verl_rlif.answers import symbolic
from verl_rlif.answers.normalize import canonical_math_key


def _exact(key: str) -> bool:
    return canonical_math_key(key)[1]


def merge_equivalent_keys(
    group_ids: Sequence[Hashable],
    keys: Sequence[str | None],
    equivalent: Callable[[str, str], bool] = symbolic.equivalent,
) -> list[str | None]:
    """``keys`` with each group's equivalent distinct keys replaced by one representative (the most frequent,
    then the smallest)."""
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
            match = next(
                (rep for rep in representatives if not (_exact(rep) and _exact(key)) and equivalent(rep, key)), None
            )
            if match is None:
                representatives.append(key)
            else:
                renames[(group, key)] = match
    return [renames.get((group, key), key) if key else key for group, key in zip(group_ids, keys, strict=True)]
