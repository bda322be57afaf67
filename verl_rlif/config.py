"""The one home of verl-rlif's hyperparameters: defaults, units and validation.

Pure Python (no verl, no torch), so the core, the adapters and ``verl-rlif check`` all read the same
values. Every field's unit is in its name or its docstring; every bad value raises ``ValueError`` naming
the valid choices, at construction time, before any worker or GPU starts.

Defaults follow the anchors in ``docs/algorithms.md`` (TTRL/EMPO voting, Intuitor self-certainty,
GDPO, and the KL-Cov 7B recipe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VOTE_MODES = ("majority", "share")
TIE_POLICIES = ("all", "none", "first")
WHITEN_LEVELS = ("response", "token")


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(choices)}")


def _require_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    bad_low = value <= low if low_open else value < low
    if not math.isfinite(value) or bad_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is out of range; it must lie in {bracket}{low}, {high}]")


@dataclass(frozen=True)
class VoteConfig:
    """Answer-level reward by cluster voting within each prompt group."""

    mode: str = "majority"
    """``majority``: 1 for members of the largest cluster, else 0 (TTRL). ``share``: own cluster size / group
    size (EMPO's semantic-entropy reward)."""
    tie_policy: str = "all"
    """``majority`` mode when several clusters share the top size. ``all``: every tied cluster wins (EMPO; keeps
    rewards invariant to response order). ``none``: no cluster wins, the group gets 0 (no consensus).
    ``first``: the tied cluster whose first member comes first in the batch wins (TTRL's ``Counter`` order)."""
    min_majority_ratio: float = 0.0
    """Fraction of the group (0..1). A group whose largest cluster holds fewer responses than this fraction gets
    reward 0 for every response (EMPO uses 0.25-0.3). 0 disables the gate."""

    def __post_init__(self) -> None:
        _require_choice("vote.mode", self.mode, VOTE_MODES)
        _require_choice("vote.tie_policy", self.tie_policy, TIE_POLICIES)
        _require_range("vote.min_majority_ratio", self.min_majority_ratio, 0.0, 1.0)


@dataclass(frozen=True)
class SelfCertaintyConfig:
    """Completion-level reward by token-wise self-certainty (Intuitor)."""

    chunk_size_tokens: int = 1024
    """Tokens per chunk of the fp32 pass over the vocabulary; the extra peak memory is
    ``chunk_size_tokens * vocab_size * 4`` bytes (1024 x 152k = 0.6 GB)."""

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_size_tokens, int) or self.chunk_size_tokens < 1:
            raise ValueError(f"self_certainty.chunk_size_tokens={self.chunk_size_tokens!r} must be a positive int")


@dataclass(frozen=True)
class GDPOConfig:
    """Group reward-decoupled normalisation (GDPO, arXiv 2601.05242)."""

    weights: tuple[float, ...] = (1.0, 1.0)
    """One weight per reward component, in component order (vote, self-certainty)."""
    eps: float = 1e-6
    """Added to the within-group std before dividing (verl's GRPO epsilon)."""
    whiten: str = "response"
    """Batch whitening statistics: ``response`` (each response counts once; default) or ``token`` (each response
    counts once per valid token, which is verl's ``masked_whiten`` and weights long responses more)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.weights or not all(math.isfinite(w) for w in self.weights):
            raise ValueError(f"gdpo.weights={list(self.weights)!r} must be a non-empty list of finite numbers")
        _require_range("gdpo.eps", self.eps, 0.0, 1.0, low_open=True)
        _require_choice("gdpo.whiten", self.whiten, WHITEN_LEVELS)


@dataclass(frozen=True)
class KLCovConfig:
    """KL-Cov policy loss (Cui et al., arXiv 2505.22617)."""

    top_token_fraction: float = 0.002
    """rho: the FRACTION (not percent) of valid tokens per micro-batch that get the |log-ratio| penalty, chosen by
    largest cov(A, log pi). Recipe values: 2e-3 for 7B, 2e-4 for 32B. verl calls this ``kl_cov_ratio``."""
    beta: float = 1.0
    """Coefficient of |log pi - log pi_old| on the selected tokens (verl's ``ppo_kl_coef``; the paper uses 1)."""

    def __post_init__(self) -> None:
        _require_range("kl_cov.top_token_fraction", self.top_token_fraction, 0.0, 1.0, low_open=True)
        _require_range("kl_cov.beta", self.beta, 0.0, math.inf)
