"""The built-in example behind ``verl-rlif pipeline``: the whole RLIF reward pipeline on a small, readable batch.

Three prompts, eight sampled responses each, with the answers a model might give. A tiny random LM head
stands in for the policy: it produces per-token logits whose sharpness differs by response, so
self-certainty varies. The pipeline is the one the trainer runs:

    cluster vote -> per-token self-certainty -> sequence self-certainty -> GDPO -> KL-Cov loss

Ground truth is used only to report pseudo-label accuracy, never for a reward.
(``make demo`` runs the same method through verl's real trainer: ``verl_rlif.testing.cpu_demo``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from verl_rlif.answers import get_extractor
from verl_rlif.config import GDPOConfig, KLCovConfig, VoteConfig
from verl_rlif.core import (
    cluster_vote,
    gdpo_advantages,
    kl_cov_token_losses,
    self_certainty_from_logits,
    sequence_self_certainty,
)

# (prompt, ground truth for monitoring only, extracted answers of 8 sampled responses; None = no answer).
# They are keyed by the math extractor as in training, so 5/2, 2.5 and \frac{5}{2} vote together.
EXAMPLE = [
    ("What is 6 * 7?", "42", ["42", "42", "41", "42.0", None, "42", "24", "42"]),
    ("Simplify 10/4.", "5/2", ["5/2", "2.5", "\\frac{5}{2}", "5/2", "2", "\\dfrac52", None, "2.5"]),
    ("How many primes are below 20?", "8", ["8", "9", "7", "8", "9", "9", "10", None]),
]
RESPONSE_TOKENS = 12
HIDDEN, VOCAB, PADDED_VOCAB = 16, 50, 56


@dataclass(frozen=True)
class DemoRow:
    prompt: int
    answer: str | None
    answer_key: str | None
    vote_reward: float
    self_certainty: float
    advantage: float


@dataclass(frozen=True)
class DemoResult:
    rows: list[DemoRow]
    majority_ratio: list[float]
    pseudo_label_correct: list[bool]
    kl_cov_selected_fraction: float
    kl_cov_loss: float


def run_demo(seed: int = 0) -> DemoResult:
    """Run the pipeline on :data:`EXAMPLE` and return every intermediate a reader would want to see."""
    g = torch.Generator().manual_seed(seed)
    group_ids = [p for p, (_, _, answers) in enumerate(EXAMPLE) for _ in answers]
    answers = [a for _, _, group in EXAMPLE for a in group]
    num = len(answers)

    math = get_extractor("math")
    keys = [None if a is None else math.canonical(a) for a in answers]
    vote = cluster_vote(group_ids, keys, VoteConfig())

    # Sharper hidden states -> peakier next-token distributions -> higher self-certainty.
    sharpness = torch.linspace(0.5, 3.0, num)[torch.randperm(num, generator=g)]
    hidden = torch.randn(num, RESPONSE_TOKENS, HIDDEN, generator=g) * sharpness[:, None, None]
    logits = hidden @ (torch.randn(PADDED_VOCAB, HIDDEN, generator=g) * 0.5).T
    lengths = torch.randint(4, RESPONSE_TOKENS + 1, (num,), generator=g)
    mask = torch.arange(RESPONSE_TOKENS)[None, :] < lengths[:, None]
    token_sc = self_certainty_from_logits(logits, vocab_size=VOCAB)
    seq_sc = sequence_self_certainty(token_sc, mask)

    gdpo = gdpo_advantages(torch.stack([vote.rewards, seq_sc], dim=1), group_ids, GDPOConfig())

    old_logp = torch.log_softmax(logits[..., :VOCAB], -1).max(-1).values
    new_logp = old_logp + 0.05 * torch.randn(old_logp.shape, generator=g)
    adv_tokens = gdpo.advantages[:, None].expand_as(old_logp)
    loss, metrics = kl_cov_token_losses(old_logp, new_logp, adv_tokens, mask, KLCovConfig(top_token_fraction=0.02))

    majority_keys = {int(vote.group[i]): keys[i] for i in range(num) if vote.in_majority[i]}
    return DemoResult(
        rows=[
            DemoRow(
                group_ids[i], answers[i], keys[i], vote.rewards[i].item(), seq_sc[i].item(), gdpo.advantages[i].item()
            )
            for i in range(num)
        ],
        majority_ratio=vote.majority_ratio.tolist(),
        pseudo_label_correct=[
            majority_keys.get(p) == math.canonical_truth(truth) for p, (_, truth, _) in enumerate(EXAMPLE)
        ],
        kl_cov_selected_fraction=metrics["selected_fraction"].item(),
        kl_cov_loss=(loss.sum() / mask.sum()).item(),
    )
