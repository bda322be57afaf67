"""Ground-truth reward for the SUPERVISED REFERENCE only (the ground-truth GRPO baseline). Never used by the plugin.

verl's ``naive`` reward manager calls :func:`compute_score` when a config sets
``reward.custom_reward_function.path=pkg://verl_rlif.adapters.ground_truth_reward`` (``preset/
ground_truth_grpo.yaml`` does, together with ``rlif.ground_truth_reference=true`` and verl's own ``sync`` trainer
and ``grpo`` estimator). The score is 1.0 when the response's answer key equals the ground truth's key, else 0.0:
exactly the ``acc`` the label-free runs report for monitoring, from the same extractors (``rlif.extractor``), so
every preset's validation numbers are graded alike. The returned dict also carries ``pred`` and ``has_answer``,
which verl's validation turns into ``maj@N``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from verl_rlif.adapters.reward_manager import answer_info, configure_answer_backends
from verl_rlif.config import RLIFConfig


@lru_cache(maxsize=8)
def _settings(rlif_json: str) -> RLIFConfig:
    settings = RLIFConfig.from_mapping(json.loads(rlif_json))
    configure_answer_backends(settings)  # code data: the configured isolation, not the defaults
    return settings


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    rlif: DictConfig | dict | None = None,
    **_: Any,
) -> dict[str, Any]:
    """``{"score": acc, "acc", "pred", "has_answer", "answer_key"}`` for one response.

    Args:
        data_source: the sample's ``data_source`` (picks the extractor through ``rlif.extractor``).
        solution_str: the decoded response.
        ground_truth: ``reward_model.ground_truth``; a sample without one scores 0.0.
        extra_info: the sample's ``extra_info``.
        rlif: the training config's ``rlif`` section (the preset passes ``${rlif}`` through
            ``reward.custom_reward_function.reward_kwargs.rlif``); defaults when absent.
    """
    if isinstance(rlif, DictConfig):
        rlif = OmegaConf.to_container(rlif, resolve=True)
    settings = _settings(json.dumps(rlif or {}, sort_keys=True))
    info = answer_info(solution_str, str(data_source), dict(extra_info or {}), ground_truth, settings)
    score = info.get("acc", 0.0)
    return {"score": score, "acc": score, **info}
