"""The pure RLIF core: plain torch, no verl import. Each function documents its shapes and equation.

* :mod:`~verl_rlif.core.voting`: answer-level reward by cluster voting.
* :mod:`~verl_rlif.core.self_certainty`: completion-level reward by token-wise self-certainty.
* :mod:`~verl_rlif.core.gdpo`: per-reward group normalisation, weighted sum, batch whitening.
* :mod:`~verl_rlif.core.kl_cov`: the KL-Cov per-token policy loss.
"""

from .gdpo import GDPOResult, gdpo_advantages, group_zscores
from .kl_cov import kl_cov_token_losses, select_top_cov_tokens
from .self_certainty import (
    lm_head_mean_row,
    self_certainty_from_hidden_states,
    self_certainty_from_logits,
    self_certainty_from_logits_and_log_probs,
    self_certainty_from_vocab_parallel_logits,
    sequence_self_certainty,
)
from .voting import VoteResult, cluster_vote

__all__ = [
    "GDPOResult",
    "VoteResult",
    "cluster_vote",
    "gdpo_advantages",
    "group_zscores",
    "kl_cov_token_losses",
    "lm_head_mean_row",
    "select_top_cov_tokens",
    "self_certainty_from_hidden_states",
    "self_certainty_from_logits",
    "self_certainty_from_logits_and_log_probs",
    "self_certainty_from_vocab_parallel_logits",
    "sequence_self_certainty",
]
