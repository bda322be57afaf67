"""Reward manager ``rlif`` (verl's reward-loop registry): per response, its answer key, nothing more.

verl scores one trajectory at a time in the reward workers, so the vote cannot happen here: this manager
only extracts and canonicalises the answer (the expensive part, which scales out with
``reward.num_workers``) and the ``rlif`` trainer votes over whole groups at advantage time.

Per sample it returns ``reward_score = 0.0`` (the training reward is computed later and never from ground
truth) and ``reward_extra_info`` with a fixed key set:

* ``answer_key``: canonical answer key as a string, ``""`` for no answer (the vote ignores it);
* ``pred``: the same key, which verl's validation turns into ``maj@N`` metrics; for no answer a marker unique to
  the response (``<no answer:...>``), so answer-less responses never form a majority there, as in the vote;
* ``has_answer``: 1.0 / 0.0;
* ``acc`` (only when the sample has ``reward_model.ground_truth``): 1.0 if the key equals the ground truth's
  key. Monitoring only: the trainer never reads it for advantages. verl's validation reports it as pass@1
  (``val-core/<data_source>/acc/mean@N``) and, with ``pred``, majority-vote accuracy (``acc/maj@N/mean``).

Extraction runs in the event loop's thread pool, so verl's concurrent ``run_single`` calls execute programs of
the ``code`` extractor in parallel (``verl_rlif.sandbox`` is thread-safe). With a ``code`` extractor configured,
the sandbox starts in ``__init__`` and refuses there if its required isolation layers are missing.

Select with ``reward.reward_manager.name=rlif`` (``verl_rlif/configs/rlif.yaml`` does).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_rlif import sandbox
from verl_rlif.answers import check_extractor_names, get_extractor, symbolic
from verl_rlif.config import RLIFConfig

logger = logging.getLogger(__name__)

NAME = "rlif"
NO_ANSWER_PRED = "<no answer:"
"""Prefix of the ``pred`` of a response without an answer. verl's ``maj@N`` counts equal ``pred`` strings, so one
shared value ("") would let answer-less responses outvote a real answer; a unique marker per response cannot."""


def answer_info(
    response: str, data_source: str, extra_info: dict[str, Any], ground_truth, settings: RLIFConfig
) -> dict:
    """The ``reward_extra_info`` of one response (see module docstring). Never raises on model output."""
    extractor = get_extractor(settings.extractor.for_data_source(data_source))
    try:
        key = extractor.extract(response, extra_info, settings.extractor.last_number_fallback)
    except Exception:  # bad model output must never crash a step: no answer
        logger.debug("answer extraction failed for data_source=%s", data_source, exc_info=True)
        key = None
    key_str = "" if key is None else str(key)
    pred = key_str if key is not None else f"{NO_ANSWER_PRED}{uuid.uuid4().hex}>"
    info = {"answer_key": key_str, "pred": pred, "has_answer": float(key is not None)}
    if ground_truth is not None:
        truth = extractor.canonical_truth(str(ground_truth))
        info["acc"] = float(key is not None and truth is not None and key_str == str(truth))
    return info


def configure_answer_backends(settings: RLIFConfig) -> None:
    """This process's symbolic worker and code sandbox follow ``rlif.extractor`` and ``rlif.sandbox``."""
    symbolic.configure(settings.extractor.symbolic, settings.extractor.symbolic_deadline_s)
    sandbox.configure(settings.sandbox)


@register(NAME)
class RLIFRewardManager(RewardManagerBase):
    """verl ``RewardManagerBase``: decodes the response once and extracts its answer key."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        self.settings = RLIFConfig.from_training_config(config)
        check_extractor_names(self.settings.extractor.names())  # a typo stops start-up, not the first step
        configure_answer_backends(self.settings)
        if "code" in self.settings.extractor.names():
            sandbox.get_executor()  # fail closed here, at start-up, when the required isolation is missing

    async def run_single(self, data: DataProto) -> dict:
        item = data[-1]  # multi-output agent loops: the final output carries the answer
        response_ids = item.batch["responses"]
        valid_length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(response_ids[:valid_length], skip_special_tokens=True)
        )
        non_tensor = item.non_tensor_batch
        ground_truth = (non_tensor.get("reward_model") or {}).get("ground_truth")
        extra_info = dict(non_tensor.get("extra_info") or {})
        data_source = str(non_tensor.get("data_source", ""))
        # in a thread: the code extractor runs programs, and concurrent samples should use all sandbox workers
        info = await self.loop.run_in_executor(
            None, lambda: answer_info(response, data_source, extra_info, ground_truth, self.settings)
        )
        return {"reward_score": 0.0, "reward_extra_info": info}
