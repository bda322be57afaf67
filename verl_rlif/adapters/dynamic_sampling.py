"""Vote-aware dynamic sampling (``rlif.dynamic_sampling``) as verl replay buffers: verl's custom-sampler hook.

verl's own dynamic sampling (``algorithm.filter_groups``) filters on a per-response number from the reward manager
and refills without bound. Ours asks the vote: after verl's replay buffer hands out finished groups (rewards done,
before the old-log-prob pass), groups whose vote reward is flat (``verl_rlif.core.group_filter``) are cleared from
TransferQueue and as many new prompts as groups are missing go to the rollout, round after round, at most
``max_refills_per_step`` rounds per step. A step that reaches the cap trains on the groups it has, or, when no
group of the step is informative, on the last round's groups unfiltered, so a run drifting toward unanimity never
loops for ever and never skips a step. The rollout servers are awake throughout: this runs inside verl's sampling
phase, before ``on_sample_end`` puts them to sleep.

The rlif trainers select these classes in their own copy of the config (``trainer.v1.sampler.custom_sampler``, one
class per verl buffer), pass the ``rlif`` section through ``trainer.v1.sampler.sampler_kwargs.rlif``, and fetch
prompts one at a time (``data.gen_batch_size=1``, as verl does for its own dynamic sampling) so that a refill asks
for exactly the missing number.

Metrics per step (``rlif/dynamic_sampling/...``): ``filtered_fraction`` (dropped / examined groups),
``refills`` (rounds), ``prompts_consumed`` (groups examined), ``trained_groups``, ``capped`` (1 when the cap cut the
step short of ``data.train_batch_size`` groups or kept flat groups).
"""

from __future__ import annotations

import logging

import transfer_queue as tq
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from verl_rlif.adapters.sessions import key_uid, reward_extra_infos, session_finals
from verl_rlif.config import RLIFConfig
from verl_rlif.core.group_filter import uninformative_groups

logger = logging.getLogger(__name__)

MODULE_PATH = f"pkg://{__name__}"
SAMPLER_KWARG = "rlif"
PREFIX = "rlif/dynamic_sampling"


def _answer_keys(batch: KVBatchMeta) -> list:
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    return [info.get("answer_key") for info in reward_extra_infos(data["extra_fields"])]


class VoteAwareSampling:
    """Mixed over one of verl's replay buffers; ``sample`` of the training partition filters and refills."""

    def __init__(self, *args, sampler_kwargs, **kwargs):
        super().__init__(*args, sampler_kwargs=sampler_kwargs, **kwargs)
        section = sampler_kwargs[SAMPLER_KWARG]
        self.rlif = RLIFConfig.from_mapping(
            OmegaConf.to_container(section) if OmegaConf.is_config(section) else section
        )
        if self.refill_fn is None:
            raise ValueError("vote-aware dynamic sampling needs verl's refill_fn to generate replacement prompts")

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[KVBatchMeta, dict]:
        verl_sample = super().sample
        if partition_id != "train":
            return verl_sample(global_steps, partition_id, batch_size)
        cap = self.rlif.dynamic_sampling.max_refills_per_step
        keys, tags, metrics = [], [], {}
        kept = consumed = dropped = refills = 0
        took_flat = False
        while True:
            batch, verl_metrics = verl_sample(global_steps, partition_id, batch_size - kept)
            for name, value in verl_metrics.items():  # verl's eviction counters, summed over the rounds
                metrics[name] = metrics.get(name, 0) + value if isinstance(value, int | float) else value
            uids = [key_uid(k) for k in batch.keys]
            final = session_finals(list(batch.keys))[0].tolist()  # as the advantage step: one vote per session
            answers = _answer_keys(batch)
            flat = uninformative_groups(
                [u for u, f in zip(uids, final, strict=True) if f],
                [a for a, f in zip(answers, final, strict=True) if f],
                self.rlif.vote,
            )
            groups = set(uids)
            consumed += len(groups)
            if refills == cap and kept == 0 and len(flat) == len(groups):
                flat, took_flat = set(), True  # the cap, nothing informative in hand: train on this round, not nothing
            drop = [i for i, uid in enumerate(uids) if uid in flat]
            if drop:
                tq.kv_clear(keys=[batch.keys[i] for i in drop], partition_id=partition_id)
            keys += [k for k, uid in zip(batch.keys, uids, strict=True) if uid not in flat]
            tags += [t for t, uid in zip(batch.tags, uids, strict=True) if uid not in flat]
            kept, dropped = kept + len(groups - flat), dropped + len(flat)
            if kept >= batch_size or refills == cap:
                break
            refills += 1
            self.refill_fn(batch_size - kept)
        capped = kept < batch_size or took_flat
        if capped:
            logger.warning(
                "verl-rlif: dynamic sampling reached rlif.dynamic_sampling.max_refills_per_step=%d at step %d; "
                "training on %d of %d groups",
                cap,
                global_steps,
                kept,
                batch_size,
            )
        metrics.update(
            {
                f"{PREFIX}/filtered_fraction": dropped / max(consumed, 1),
                f"{PREFIX}/refills": refills,
                f"{PREFIX}/prompts_consumed": consumed,
                f"{PREFIX}/trained_groups": kept,
                f"{PREFIX}/capped": float(capped),
            }
        )
        return KVBatchMeta(partition_id=partition_id, keys=keys, tags=tags), metrics


class VoteAwareReplayBuffer(VoteAwareSampling, ReplayBuffer):
    """verl's synchronous replay buffer with vote-aware dynamic sampling."""


class VoteAwareReplayBufferAsync(VoteAwareSampling, ReplayBufferAsync):
    """verl's asynchronous replay buffer with vote-aware dynamic sampling."""


def sampler_for(base_mode: str) -> str:
    """The class name verl's ``trainer.v1.sampler.custom_sampler.name`` gets for the verl mode ``base_mode``."""
    return VoteAwareReplayBuffer.__name__ if base_mode == "sync" else VoteAwareReplayBufferAsync.__name__
