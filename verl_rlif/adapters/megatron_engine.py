"""Megatron engine that also returns per-token self-certainty, from vocabulary-parallel logit shards.

Registered in verl's ``EngineRegistry`` for ``language_model`` / ``megatron`` / ``cuda`` under vendor ``rlif``
(selected by ``VERL_ENGINE_VENDOR=rlif``). verl binds ``_lm_head_logits_processor`` into each micro-batch's
forward on the last pipeline stage; there we compute self-certainty from this rank's ``[.., V/tp]`` shard
with one all-gather over the tensor-parallel group (``verl_rlif.core.self_certainty``), masking columns at or
beyond the HF ``config.vocab_size`` (Megatron may pad the vocabulary for TP divisibility). It must run before
``super()``, which divides the logits by temperature in place and hands them to Megatron's cross-entropy
(which overwrites them). The processor sees the context-parallel-local chunk of the sequence, with sequence
parallelism already gathered; verl gathers every returned key across CP and unpads it afterwards, exactly as
for ``log_probs``.

Fused kernels bypass the processor altogether, so ``forward_step`` refuses the flag there.

verl internals relied on (pinned verl==0.9.1): ``_lm_head_logits_processor(logits, label, temperature, *,
batch, ...)`` and ``forward_step(batch_iter, ...)``; see docs/how-it-plugs-into-verl.md.
"""

from __future__ import annotations

import itertools

import torch
from megatron.core import parallel_state as mpu
from verl.workers.engine import EngineRegistry, MegatronEngineWithLMHead

from verl_rlif.adapters.engine_flags import (
    FUSED_KERNELS_ERROR,
    OUTPUT_KEY,
    VENDOR,
    chunk_size,
    safe_temperature,
    wants_self_certainty,
)
from verl_rlif.core.self_certainty import self_certainty_from_vocab_parallel_logits

if MegatronEngineWithLMHead is None:  # verl.workers.engine sets it to None when Megatron fails to import
    raise ImportError("verl's Megatron engine is unavailable in this environment (megatron-core missing?)")


@EngineRegistry.register(model_type="language_model", backend="megatron", device="cuda", vendor=VENDOR)
class RLIFMegatronEngineWithLMHead(MegatronEngineWithLMHead):
    """verl's Megatron LM engine plus ``self_certainty`` in the model outputs on request."""

    def forward_step(self, batch_iter, model, logits_processor_func, postprocess_micro_batch_func):
        if self.engine_config.use_fused_kernels:
            batch = next(batch_iter)
            if wants_self_certainty(batch):
                raise NotImplementedError(FUSED_KERNELS_ERROR)
            batch_iter = itertools.chain([batch], batch_iter)
        return super().forward_step(batch_iter, model, logits_processor_func, postprocess_micro_batch_func)

    def _lm_head_logits_processor(self, logits, label, temperature, **kwargs):
        self_certainty = None
        if wants_self_certainty(kwargs["batch"]):
            self_certainty = self._self_certainty(logits, temperature, kwargs["batch"])
        ret = super()._lm_head_logits_processor(logits, label, temperature, **kwargs)
        if self_certainty is not None:
            ret[OUTPUT_KEY] = self_certainty
        return ret

    @torch.no_grad()
    def _self_certainty(self, logits: torch.Tensor, temperature: torch.Tensor, batch) -> torch.Tensor:
        """``[b, s]`` fp32 from the ``[b, s, V/tp]`` shard and per-token temperature ``[b, s]``."""
        start = mpu.get_tensor_model_parallel_rank() * logits.shape[-1]
        return self_certainty_from_vocab_parallel_logits(
            logits,
            vocab_start_index=start,
            vocab_size=self.model_config.hf_config.vocab_size,
            group=mpu.get_tensor_model_parallel_group(),
            temperature=safe_temperature(temperature),
            chunk_size_tokens=chunk_size(batch),
        )
