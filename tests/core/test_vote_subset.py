"""Voting on more responses than are trained on: the random subset per group, and the step fed the full vote."""

import numpy as np
import torch

from verl_rlif.config import RLIFConfig
from verl_rlif.core.step import rlif_step
from verl_rlif.core.vote_subset import rows_per_group, select_trained_rows


def test_keeps_trained_per_prompt_rows_of_every_group_at_random():
    ids = np.repeat(["a", "b", "c"], [8, 8, 3])  # c is short (a failed rollout): all of it is kept
    kept = select_trained_rows(ids, 4, seed=0)
    assert torch.equal(kept, kept.sort().values)
    assert [int((ids[kept.numpy()] == g).sum()) for g in "abc"] == [4, 4, 3]
    assert torch.equal(select_trained_rows(ids, 4, seed=0), kept)  # reproducible
    assert not torch.equal(select_trained_rows(ids, 4, seed=1), kept)  # and drawn from the seed


def test_every_row_is_equally_likely_to_be_trained():
    ids = np.repeat(np.arange(2), 8)
    counts = torch.zeros(16)
    for seed in range(2000):
        counts[select_trained_rows(ids, 2, seed)] += 1
    assert counts.sum() == 2000 * 4
    assert (counts / 2000 - 0.25).abs().max() < 0.04  # 2 of 8 per group


def test_rows_per_group():
    assert rows_per_group(["a"] * 8 + ["b"] * 4) == 6.0
    assert rows_per_group([]) == 0.0


def test_kept_rows_train_on_the_vote_over_all_voters():
    # 8 voters: answers 7,7,7,3,3,3,3,3 -> 3 wins (5 of 8). Train on rows 0-3 (three 7s and one 3): voting over
    # the kept rows alone would make 7 the winner; the full vote's rewards are what the kept rows get.
    rlif = RLIFConfig.from_mapping({"rewards": ["vote"], "gdpo": {"weights": [1.0], "whiten": "none"}})
    keys = ["7", "7", "7", "3"]
    mask = torch.ones(4, 2)
    alone = rlif_step(["q"] * 4, keys, None, mask, rlif)
    full = rlif_step(["q"] * 4, keys, None, mask, rlif, vote_rewards=torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert alone.rewards[:, 0].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert full.rewards[:, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert full.advantages[3] > 0 > full.advantages[0]
    assert "rlif/majority_ratio/mean" not in full.metrics  # the caller logs the full vote's metrics
