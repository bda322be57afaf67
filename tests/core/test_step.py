"""The whole RLIF advantage step (pure): hand-checked against its parts, padding rows, and no label leak."""

import pytest
import torch

from verl_rlif.config import RLIFConfig
from verl_rlif.core import cluster_vote, gdpo_advantages, sequence_self_certainty
from verl_rlif.core.step import rlif_step

UIDS = ["a"] * 4 + ["b"] * 4
KEYS = ["1", "1", "2", None, "7", "7", "7", "8"]


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(6)[None, :] < torch.randint(1, 7, (8,), generator=g)[:, None]).long()
    return torch.rand(8, 6, generator=g) * 3, mask


def test_equals_its_parts():
    token_sc, mask = batch()
    config = RLIFConfig()
    step = rlif_step(UIDS, KEYS, token_sc, mask, config)
    vote = cluster_vote(UIDS, KEYS, config.vote).rewards
    sc = sequence_self_certainty(token_sc, mask)
    want = gdpo_advantages(torch.stack([vote, sc], 1), UIDS, config.gdpo).advantages
    torch.testing.assert_close(step.advantages, want)
    torch.testing.assert_close(step.combined_reward, vote + sc)
    assert step.metrics["rlif/vote_reward/mean"] == pytest.approx(vote.mean().item())
    assert step.metrics["rlif/answer_rate/mean"] == pytest.approx((3 / 4 + 1) / 2)
    assert step.metrics["rlif/majority_ratio/mean"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert "rlif/pseudo_label_acc" not in step.metrics  # no ground truth given


def test_vote_only_baseline():
    token_sc, mask = batch()
    config = RLIFConfig.from_mapping({"rewards": ["vote"], "gdpo": {"weights": [1.0]}})
    step = rlif_step(UIDS, KEYS, None, mask, config)
    assert step.rewards.shape == (8, 1) and "rlif/self_certainty/mean" not in step.metrics
    with pytest.raises(ValueError, match="no per-token self-certainty"):
        rlif_step(UIDS, KEYS, None, mask, RLIFConfig())


def test_excluded_rows_take_no_part():
    token_sc, mask = batch()
    # two padding rows that copy row 0 (as verl's balancing does) with a shared uid
    uids, keys = UIDS + ["pad", "pad"], KEYS + ["1", "1"]
    token_sc2, mask2 = torch.cat([token_sc, token_sc[:2]]), torch.cat([mask, mask[:2]])
    include = torch.tensor([True] * 8 + [False] * 2)
    padded = rlif_step(uids, keys, token_sc2, mask2, RLIFConfig(), include=include)
    plain = rlif_step(UIDS, KEYS, token_sc, mask, RLIFConfig())
    torch.testing.assert_close(padded.advantages[:8], plain.advantages)
    assert padded.advantages[8:].abs().sum() == 0 and padded.combined_reward[8:].abs().sum() == 0


def test_monitors_pseudo_label_and_ground_truth_accuracy():
    token_sc, mask = batch()
    # group a: majority "1" is right; group b: majority "7" is wrong (the truth is "8")
    correct = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    step = rlif_step(UIDS, KEYS, token_sc, mask, RLIFConfig(), correct=correct)
    assert step.metrics["rlif/pseudo_label_acc"] == pytest.approx(0.5)
    assert step.metrics["rlif/ground_truth_acc"] == pytest.approx(3 / 8)


def test_ground_truth_never_reaches_advantages():
    token_sc, mask = batch()
    steps = [
        rlif_step(UIDS, KEYS, token_sc, mask, RLIFConfig(), correct=correct)
        for correct in ([1.0] * 8, [0.0] * 8, [None] * 8, [1.0, 0.0] * 4, None)
    ]
    for step in steps[1:]:
        assert torch.equal(step.advantages, steps[0].advantages)
        assert torch.equal(step.combined_reward, steps[0].combined_reward)


def test_entropy_baseline_rewards_minus_mean_token_entropy():
    token_entropy, mask = batch(seed=3)
    config = RLIFConfig.from_mapping({"rewards": ["entropy"], "gdpo": {"weights": [1.0]}})
    step = rlif_step(UIDS, KEYS, None, mask, config, token_entropy=token_entropy)
    # hand check on row 0: the reward is minus the mean entropy of its valid tokens
    row0 = token_entropy[0, mask[0].bool()].mean()
    assert step.rewards[0, 0].item() == pytest.approx(-row0.item())
    mean_entropy = sequence_self_certainty(token_entropy, mask)  # the same masked mean per row
    torch.testing.assert_close(step.rewards[:, 0], -mean_entropy)
    want = gdpo_advantages(-mean_entropy.unsqueeze(1), UIDS, config.gdpo).advantages
    torch.testing.assert_close(step.advantages, want)
    # the most certain (lowest-entropy) response of each group gets the largest advantage
    for group in (slice(0, 4), slice(4, 8)):
        assert step.advantages[group].argmax() == mean_entropy[group].argmin()
    assert step.metrics["rlif/entropy/mean"] == pytest.approx(mean_entropy.mean().item())  # logged unsigned (nats)
    assert "rlif/majority_ratio/mean" in step.metrics  # the vote monitors still run in every baseline
    with pytest.raises(ValueError, match="no per-token entropy"):
        rlif_step(UIDS, KEYS, None, mask, config)


def test_entropy_values_under_the_mask_only():
    token_entropy, mask = batch(seed=4)
    config = RLIFConfig.from_mapping({"rewards": ["vote", "entropy"]})
    noisy = torch.where(mask.bool(), token_entropy, torch.nan)  # padding may hold anything
    clean = rlif_step(UIDS, KEYS, None, mask, config, token_entropy=token_entropy * mask)
    noisy_step = rlif_step(UIDS, KEYS, None, mask, config, token_entropy=noisy)
    torch.testing.assert_close(noisy_step.advantages, clean.advantages)
