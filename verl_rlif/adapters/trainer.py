"""Trainer modes ``rlif``, ``rlif_colocate_async``, ``rlif_separate_async`` (verl's v1 ``TRAINER_REGISTRY``).

One mixin, :class:`RLIFSteps`, applied to each of verl's registered v1 trainers (``sync``, ``colocate_async``,
``separate_async``): the schedule, replay buffer, weight sync and checkpointing stay verl's; the mixin changes
four steps and nothing else:

* ``__init__``: validates the config (``verl_rlif.adapters.checks``) and checks that every component is
  registered in this process, before any worker starts; then hands verl its own copy of the config whose
  ``trainer.v1.trainer_mode`` is the base mode (verl reads the mode from the config in several places:
  replay buffer, dataloader, checkpointing, rollout skip);
* ``_compute_old_log_prob``: asks the actor engine for self-certainty in the same forward pass as the old
  log-probs (micro-batch flag ``calculate_self_certainty``); the engine's extra output lands in
  TransferQueue under ``self_certainty``. The flag wraps verl's whole step, so under ``separate_async`` (which
  swaps the saved pi_old weights in around that pass) self-certainty comes from the same pi_old as the log-probs;
* ``_compute_ref_log_prob``: forces the flag off (the reference pass writes its outputs under the same keys);
* ``_balance_batch`` (the first step after generation and reward) and ``_update_actor``: with
  ``rlif.vote.trained_per_prompt`` below the group size, vote over every generated response (one vote per agent
  session), keep a random subset of each group's sessions and drop the other rows from TransferQueue before any
  forward pass (``verl_rlif.adapters.vote_subset``); both run with the trained group size as verl's ``rollout.n``, which
  verl uses to size PPO mini-batches;
* ``_compute_advantage``: fetches uids, answer keys (from the reward manager's ``reward_extra_info``) and
  self-certainty, optionally merges equivalent keys within each group, runs ``verl_rlif.core.step.rlif_step``
  (vote + self-certainty, or the entropy baseline from verl's own ``entropy`` field, -> GDPO), and writes
  ``advantages``, ``returns`` and the combined label-free reward (``rm_scores``, ``token_level_rewards``).
  Ground truth reaches only the ``rlif/*_acc`` monitors. verl's padding rows (tag ``is_padding``) take no
  part. Rollout correction (IS weights) is applied exactly as verl's own step does.

verl internals relied on (pinned verl==0.9.1; docs/how-it-plugs-into-verl.md): the private ``_compute_*``
step methods, ``batch.extra_info``/``batch.tags`` of ``KVBatchMeta``, and the TransferQueue field names ``uid``,
``response_mask``, ``extra_fields``, ``old_log_probs``, ``rollout_log_probs``, ``entropy``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
import transfer_queue as tq
from omegaconf import DictConfig, open_dict
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.v1 import (
    PPOTrainerColocateAsync,
    PPOTrainerSeparateAsync,
    PPOTrainerSync,
    register_trainer,
)
from verl.workers.utils.padding import response_from_nested, response_to_nested

from verl_rlif.adapters import dynamic_sampling
from verl_rlif.adapters.checks import SELF_CERTAINTY_BACKENDS, validate, verify_registered
from verl_rlif.adapters.engine_flags import CHUNK_KEY, FLAG, OUTPUT_KEY
from verl_rlif.adapters.reward_manager import configure_answer_backends
from verl_rlif.adapters.sessions import reward_extra_infos, session_finals
from verl_rlif.adapters.vote_subset import VOTED_KEY, TrainedSubset, group_size_metrics, rollout_n
from verl_rlif.answers.merge import merge_equivalent_keys
from verl_rlif.config import RLIFConfig
from verl_rlif.core.step import RLIFStep, rlif_step

logger = logging.getLogger(__name__)

NAME = "rlif"
"""The synchronous mode; ``checks.TRAINER_MODES`` lists every mode and the verl mode it runs."""
ENTROPY_KEY = "entropy"
"""TransferQueue field verl's ``_compute_old_log_prob`` writes (per response token, nats) on every step."""
MISSING_SELF_CERTAINTY = (
    "the actor returned no self_certainty: VERL_ENGINE_VENDOR=rlif did not reach the Ray workers, or "
    f"actor_rollout_ref.actor.strategy selects an engine verl-rlif does not extend (supported: "
    f"{', '.join(SELF_CERTAINTY_BACKENDS)})"
)


def last_token_scores(values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` with ``values[i]`` on row i's last valid response token and 0 elsewhere (verl's rm_scores).

    The last valid token is found by position, not by count: multi-turn masks have holes (tool outputs).
    """
    positions = torch.arange(response_mask.shape[-1]).expand_as(response_mask)
    last = torch.where(response_mask.bool(), positions, -1).amax(dim=-1)
    scores = torch.zeros(response_mask.shape, dtype=torch.float32)
    rows = (last >= 0).nonzero().squeeze(-1)
    scores[rows, last[rows]] = values[rows].float()
    return scores


def _drop_self_certainty_flags(batch) -> None:
    batch.extra_info.pop(FLAG, None)
    batch.extra_info.pop(CHUNK_KEY, None)


def verl_config(config: DictConfig, base_mode: str, rlif: RLIFConfig) -> DictConfig:
    """The trainer's own copy of ``config`` for verl; ``config`` itself is left as it is.

    * ``trainer.v1.trainer_mode`` is verl's ``base_mode``: verl reads the mode from the config (not only from
      ``self.trainer_mode``): the replay-buffer class and its per-mode settings ``trainer.v1.<mode>.*``, exact-refill
      dataloading, TransferQueue checkpointing and re-issue, and the rollout-skip cache. Each must see the schedule
      the trainer runs.
    * with ``rlif.dynamic_sampling.enable``: verl's custom-sampler hook selects our vote-aware replay buffer, which
      gets the ``rlif`` section through ``sampler_kwargs``, and prompts are fetched one at a time so a refill asks
      for exactly the missing number (what verl does for its own dynamic sampling).
    """
    own = copy.deepcopy(config)
    with open_dict(own):
        own.trainer.v1.trainer_mode = base_mode
        if rlif.dynamic_sampling.enable:
            sampler = own.trainer.v1.sampler
            sampler.custom_sampler = {
                "path": dynamic_sampling.MODULE_PATH,
                "name": dynamic_sampling.sampler_for(base_mode),
            }
            sampler.sampler_kwargs = {
                **(sampler.get("sampler_kwargs") or {}),
                dynamic_sampling.SAMPLER_KWARG: own.get("rlif") or {},
            }
            own.data.gen_batch_size = 1
    return own


class RLIFSteps:
    """The RLIF steps, mixed into one of verl's v1 trainer classes (``base_mode`` names it in verl's registry)."""

    base_mode: str = "sync"

    def __init__(self, config):
        for warning in validate(config):
            logger.warning("verl-rlif: %s", warning)
        verify_registered(config)
        self.rlif = RLIFConfig.from_training_config(config)
        configure_answer_backends(self.rlif)  # the vote-time merge asks the symbolic worker
        self._subset = TrainedSubset(self.rlif, config)
        super().__init__(verl_config(config, self.base_mode, self.rlif))

    @property
    def _uses_self_certainty(self) -> bool:
        return "self_certainty" in self.rlif.rewards

    def _compute_old_log_prob(self, batch, metrics):
        batch.extra_info[FLAG] = self._uses_self_certainty
        batch.extra_info[CHUNK_KEY] = self.rlif.self_certainty.chunk_size_tokens
        try:
            output = super()._compute_old_log_prob(batch, metrics)
        finally:
            _drop_self_certainty_flags(batch)
        _drop_self_certainty_flags(output)  # verl may hand back a new meta carrying the same extra_info
        return output

    def _compute_ref_log_prob(self, batch, metrics):
        batch.extra_info[FLAG] = False  # the reference pass must never overwrite the actor's self_certainty
        return super()._compute_ref_log_prob(batch, metrics)

    def _balance_batch(self, batch, metrics, **kwargs):
        if not self._subset.active:
            return super()._balance_batch(batch, metrics, **kwargs)
        seed = self._subset.seed(self.global_steps, self.local_trigger_step)  # verl: 0 in __init__, then per update
        batch = self._subset.vote_and_keep(batch, metrics, seed)
        with rollout_n(self.config, self._subset.trained_per_prompt):  # verl pads to mini-batches of rollout.n
            return super()._balance_batch(batch, metrics, **kwargs)

    def _update_actor(self, batch, metrics):
        with rollout_n(self.config, self._subset.trained_per_prompt if self._subset.active else None):
            batch = super()._update_actor(batch, metrics)
        for key in [k for k in metrics if k.startswith("actor/rlif/")]:  # our policy-loss metrics
            metrics[key.removeprefix("actor/")] = metrics.pop(key)
        return batch

    def _compute_advantage(self, batch, metrics):
        fields = ["uid", "response_mask", "extra_fields", "old_log_probs", "rollout_log_probs"]
        if self._subset.active:
            fields.append(VOTED_KEY)
        if self._uses_self_certainty:
            fields.append(OUTPUT_KEY)
        uses_entropy = "entropy" in self.rlif.rewards
        if uses_entropy:
            fields.append(ENTROPY_KEY)
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        if self._uses_self_certainty and OUTPUT_KEY not in data.keys():
            raise RuntimeError(MISSING_SELF_CERTAINTY)
        response_mask = data["response_mask"]  # nested, response-only
        token_sc = token_entropy = None
        if self._uses_self_certainty:
            token_sc = response_from_nested(data.pop(OUTPUT_KEY), response_mask).to_padded_tensor(0.0)
        if uses_entropy:  # verl's old-log-prob step stores it response-only already
            token_entropy = data.pop(ENTROPY_KEY).to_padded_tensor(0.0)
        infos = reward_extra_infos(data.pop("extra_fields"))
        # a session votes once, by its final output, and every output of the session trains on that result (as
        # verl's GRPO does); the default single-output agent loop has one final output per session
        final, source = session_finals(list(batch.keys))
        real = torch.tensor([not tag.get("is_padding", False) for tag in batch.tags], dtype=torch.bool)
        include = real & final

        padded = DataProto(batch=data.to_padded_tensor())
        uids = padded.batch.pop("uid").tolist()
        mask = padded.batch["response_mask"]
        answer_keys = [info.get("answer_key") for info in infos]
        voted = padded.batch.pop(VOTED_KEY) if self._subset.active else None  # the vote over all voters
        if self.rlif.extractor.merge_equivalent_in_group and voted is None:
            answer_keys = merge_equivalent_keys(uids, answer_keys, budget_s=self.rlif.extractor.merge_budget_s)
        if voted is None:
            metrics.update(group_size_metrics(uids, include, voted=None))
        # the rows every forward pass of this step ran on: every output of a session, not only its final one
        metrics["rlif/vote/trained_rows"] = int(real.sum())
        step = rlif_step(
            group_ids=uids,
            answer_keys=answer_keys,
            token_self_certainty=token_sc,
            response_mask=mask,
            config=self.rlif,
            include=include,
            correct=[info.get("acc") if inc else None for info, inc in zip(infos, include.tolist(), strict=True)],
            token_entropy=token_entropy,
            vote_rewards=voted,
        )
        metrics.update(step.metrics)
        step = dataclasses.replace(
            step, advantages=step.advantages[source], combined_reward=step.combined_reward[source]
        )
        output = self._advantage_fields(step, padded, mask, metrics)
        nested = {name: response_to_nested(value, response_mask) for name, value in output.items()}
        return tq.kv_batch_put(
            keys=batch.keys, partition_id=batch.partition_id, fields=TensorDict(nested, batch_size=len(batch))
        )

    def _advantage_fields(self, step: RLIFStep, padded: DataProto, mask: torch.Tensor, metrics) -> dict:
        """The padded ``[N, T]`` fields to write back: advantages, returns, rewards, IS weights if configured."""
        advantages = step.advantages.unsqueeze(-1) * mask
        scores = last_token_scores(step.combined_reward, mask)
        out = {"advantages": advantages, "returns": advantages, "rm_scores": scores, "token_level_rewards": scores}
        rollout_corr = self.config.algorithm.get("rollout_correction", None)
        bypass = rollout_corr is not None and rollout_corr.get("bypass_mode", False)
        if rollout_corr is not None and "rollout_log_probs" in padded.batch and not bypass:
            padded, is_metrics = compute_rollout_correction_and_add_to_batch(padded, rollout_corr)
            metrics.update(is_metrics)
            out["response_mask"] = padded.batch["response_mask"]
            if "rollout_is_weights" in padded.batch:
                out["rollout_is_weights"] = padded.batch["rollout_is_weights"]
        return out


# One class per verl v1 mode: the mixin first, so its steps wrap verl's (super() is the verl trainer's step).
@register_trainer("rlif")
class RLIFTrainer(RLIFSteps, PPOTrainerSync):
    """verl's synchronous v1 trainer with vote + self-certainty rewards combined by GDPO."""

    base_mode = "sync"


@register_trainer("rlif_colocate_async")
class RLIFColocateAsyncTrainer(RLIFSteps, PPOTrainerColocateAsync):
    """verl's colocated asynchronous trainer (partial rollout on the training GPUs) with the RLIF steps."""

    base_mode = "colocate_async"


@register_trainer("rlif_separate_async")
class RLIFSeparateAsyncTrainer(RLIFSteps, PPOTrainerSeparateAsync):
    """verl's separated asynchronous trainer (standalone rollout pool, decoupled pi_old) with the RLIF steps."""

    base_mode = "separate_async"
