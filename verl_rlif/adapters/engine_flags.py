"""The micro-batch flags that ask our engines for self-certainty, shared by the engines and the trainer."""

from __future__ import annotations

import torch
from verl.utils import tensordict_utils as tu

from verl_rlif.core.self_certainty import DEFAULT_CHUNK_TOKENS

VENDOR = "rlif"
"""``VERL_ENGINE_VENDOR`` value that selects our engines in verl's ``EngineRegistry``."""
FLAG = "calculate_self_certainty"
"""Non-tensor micro-batch key; the trainer sets it for the old-log-prob pass only."""
CHUNK_KEY = "self_certainty_chunk_size_tokens"
OUTPUT_KEY = "self_certainty"
"""Model-output key; verl carries every output key back to the trainer (TransferQueue on the v1 path)."""
MEGATRON_FUSED_DYNAMIC_CP_ERROR = (
    "self-certainty with fused kernels on the Megatron engine does not support dynamic context parallelism: "
    "set actor_rollout_ref.actor.megatron.dynamic_context_parallel=false, "
    "or actor_rollout_ref.model.use_fused_kernels=false"
)
MEGATRON_FUSED_MODEL_ERROR = (
    "self-certainty with fused kernels on the Megatron engine needs a plain GPT model (vision-language models are "
    "not supported): set actor_rollout_ref.model.use_fused_kernels=false"
)


def wants_self_certainty(micro_batch) -> bool:
    return bool(tu.get_non_tensor_data(data=micro_batch, key=FLAG, default=False))


def chunk_size(micro_batch) -> int:
    return int(tu.get_non_tensor_data(data=micro_batch, key=CHUNK_KEY, default=DEFAULT_CHUNK_TOKENS))


def safe_temperature(temperature):
    """verl leaves temperature 0 on padding slots and clamps it before dividing; do the same, out of place."""
    return temperature.clamp(min=1e-8) if isinstance(temperature, torch.Tensor) else temperature
