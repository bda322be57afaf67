"""Voting on more responses than are trained on (``rlif.vote.trained_per_prompt``; TTRL votes 64, trains 32).

verl generates ``actor_rollout_ref.rollout.n`` responses per prompt (the voters). Right after generation and
reward, before the batch is balanced across data-parallel ranks, :meth:`TrainedSubset.vote_and_keep`

1. fetches the uids and answer keys of every row from TransferQueue and votes over all of them, one vote per
   agent session (by its final output; a session is a row in verl's default single-output agent loop);
2. keeps a random subset of ``trained_per_prompt`` sessions per group (``verl_rlif.core.vote_subset``, seeded by
   the data seed and the step, so reproducible), with every output of each kept session;
3. writes each kept row's vote reward (its session's) to TransferQueue (field ``rlif_vote_reward``), clears the
   dropped rows from TransferQueue, and returns the batch of kept rows.

So no old-log-prob, reference or update pass runs on a dropped row, and the advantage step reads the vote over
all voters. verl sizes PPO mini-batches (and pads the batch to them) as ``ppo_mini_batch_size x rollout.n``
rows; :func:`rollout_n` makes that the trained group size for the steps that run on the kept rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from tensordict import TensorDict

from verl_rlif.adapters.sessions import as_list, reward_extra_infos, session_finals
from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.config import RLIFConfig
from verl_rlif.core.step import vote_metrics
from verl_rlif.core.vote_subset import rows_per_group, select_trained_rows
from verl_rlif.core.voting import cluster_vote

VOTED_KEY = "rlif_vote_reward"
"""TransferQueue field: ``[N]`` fp32 vote reward of each kept row, from the vote over all voters."""


def group_size_metrics(uids: Sequence, include: torch.Tensor, voted: Sequence | None) -> dict[str, float]:
    """``rlif/vote/voters_per_prompt`` and ``rlif/vote/trained_per_prompt``: mean rows per group that voted (``voted``:
    the uids of all voters; None when every row of the batch voted and trains) and that train (``uids`` where
    ``include``)."""
    trained = [uid for uid, keep in zip(uids, include.tolist(), strict=True) if keep]
    return {
        "rlif/vote/voters_per_prompt": rows_per_group(trained if voted is None else list(voted)),
        "rlif/vote/trained_per_prompt": rows_per_group(trained),
    }


@contextlib.contextmanager
def rollout_n(config: DictConfig, n: int | None) -> Iterator[None]:
    """Within the block verl reads ``actor_rollout_ref.rollout.n`` as ``n`` (unchanged when ``n`` is None)."""
    if n is None:
        yield
        return
    rollout = config.actor_rollout_ref.rollout
    generated = rollout.n
    with open_dict(rollout):
        rollout.n = n
    try:
        yield
    finally:
        with open_dict(rollout):
            rollout.n = generated


class TrainedSubset:
    """The trainer's voting-on-more-samples step; inactive unless ``trained_per_prompt`` < ``rollout.n``."""

    def __init__(self, rlif: RLIFConfig, config: DictConfig) -> None:
        self.rlif = rlif
        generated = int(config.actor_rollout_ref.rollout.n)
        trained = rlif.vote.trained_per_prompt
        self.trained_per_prompt = trained
        self.active = trained is not None and trained < generated
        self.data_seed = int(config.data.get("seed", None) or 0)

    def seed(self, global_step: int, local_step: int = 0) -> int:
        """One seed per (data seed, step, local update): the same run draws the same subsets."""
        return (self.data_seed * 1_000_003 + int(global_step)) * 1009 + int(local_step)

    def vote_and_keep(self, batch, metrics: dict, seed: int):
        """Vote over every session of ``batch`` (a ``KVBatchMeta``), keep the subset; returns the kept rows' batch.

        A multi-output agent session carries its final reward on every output (verl copies it), so it votes once, by
        its final output (``sessions.session_finals``), ``trained_per_prompt`` counts sessions, and every output of a
        session is kept or dropped with it. The default agent loop has one output per session: sessions are rows.
        """
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "extra_fields"])
        uids = as_list(data["uid"])
        infos = reward_extra_infos(data["extra_fields"])
        real = [not tag.get("is_padding", False) for tag in batch.tags]
        final, source = session_finals(list(batch.keys))
        voters = [i for i, (keep, last) in enumerate(zip(real, final.tolist(), strict=True)) if keep and last]
        voter_uids = [uids[i] for i in voters]
        answer_keys = [infos[i].get("answer_key") for i in voters]
        if self.rlif.extractor.merge_equivalent_in_group:
            answer_keys = merge_equivalent_keys(voter_uids, answer_keys, budget_s=self.rlif.extractor.merge_budget_s)
        vote = cluster_vote(voter_uids, answer_keys, self.rlif.vote)
        metrics.update(vote_metrics(vote, [infos[i].get("acc") for i in voters]))

        kept = select_trained_rows(voter_uids, self.trained_per_prompt, seed).tolist()  # sessions
        reward_of = {voters[i]: vote.rewards[i] for i in kept}  # final row -> its session's vote reward
        rows = [r for r, s in enumerate(source.tolist()) if real[r] and s in reward_of]
        kept_keys = [batch.keys[r] for r in rows]
        dropped = sorted(set(batch.keys) - set(kept_keys))
        kept_uids = [voter_uids[i] for i in kept]
        metrics.update(group_size_metrics(kept_uids, torch.ones(len(kept), dtype=torch.bool), voted=voter_uids))
        rewards = torch.stack([reward_of[int(source[r])] for r in rows]) if rows else torch.zeros(0)
        tq.kv_batch_put(
            keys=kept_keys,
            partition_id=batch.partition_id,
            fields=TensorDict({VOTED_KEY: rewards.float()}, batch_size=len(kept_keys)),
        )
        if dropped:
            tq.kv_clear(keys=dropped, partition_id=batch.partition_id)
        return batch.select_keys(kept_keys)
