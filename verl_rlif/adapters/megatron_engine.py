"""Megatron engine that also returns per-token self-certainty, from vocabulary-parallel logit shards.

Registered in verl's ``EngineRegistry`` for ``language_model`` / ``megatron`` / ``cuda`` under vendor ``rlif``
(selected by ``VERL_ENGINE_VENDOR=rlif``). verl binds ``_lm_head_logits_processor`` into each micro-batch's
forward on the last pipeline stage; there we take path (i') (``verl_rlif.core.self_certainty``): from this
rank's ``[.., V/tp]`` shard, before ``super()`` scales it in place, z_y, the mean over the true vocabulary
(columns at or beyond the HF ``config.vocab_size`` are Megatron's TP padding) and the padding columns'
logsumexp, combined by one all-gather of three numbers per token over the tensor-parallel group; verl's own
log-probs (over the padded width) then complete eq. 1, so no second logsumexp over the vocabulary is run.
The processor sees the context-parallel-local chunk of the sequence, with sequence parallelism already
gathered; verl gathers every returned key across CP and unpads it afterwards, exactly as for ``log_probs``.

Fused kernels bypass the processor altogether (and verl's fused forward drops the final hidden states), so
``forward_step`` refuses the self-certainty flag there with the switch to turn off.

verl internals relied on (pinned verl==0.9.1): ``_lm_head_logits_processor(logits, label, temperature, *,
batch, ...)`` and ``forward_step(batch_iter, ...)``; see docs/how-it-plugs-into-verl.md.
"""

from __future__ import annotations

import itertools

import torch
from megatron.core import parallel_state as mpu
from verl.workers.engine import EngineRegistry, MegatronEngineWithLMHead

from verl_rlif.adapters.engine_flags import (
    MEGATRON_FUSED_KERNELS_ERROR,
    OUTPUT_KEY,
    VENDOR,
    chunk_size,
    safe_temperature,
    wants_self_certainty,
)
from verl_rlif.core.self_certainty import self_certainty_from_logit_stats, vocab_parallel_logit_stats

if MegatronEngineWithLMHead is None:  # verl.workers.engine sets it to None when Megatron fails to import
    raise ImportError("verl's Megatron engine is unavailable in this environment (megatron-core missing?)")


@EngineRegistry.register(model_type="language_model", backend="megatron", device="cuda", vendor=VENDOR)
class RLIFMegatronEngineWithLMHead(MegatronEngineWithLMHead):
    """verl's Megatron LM engine plus ``self_certainty`` in the model outputs on request."""

    def forward_step(self, batch_iter, model, logits_processor_func, postprocess_micro_batch_func):
        if self.engine_config.use_fused_kernels:
            batch = next(batch_iter)
            if wants_self_certainty(batch):
                raise NotImplementedError(MEGATRON_FUSED_KERNELS_ERROR)
            batch_iter = itertools.chain([batch], batch_iter)
        return super().forward_step(batch_iter, model, logits_processor_func, postprocess_micro_batch_func)

    def _lm_head_logits_processor(self, logits, label, temperature, **kwargs):
        if not wants_self_certainty(kwargs["batch"]):
            return super()._lm_head_logits_processor(logits, label, temperature, **kwargs)
        stats = self._logit_stats(logits, label, temperature, kwargs["batch"])
        ret = super()._lm_head_logits_processor(logits, label, temperature, **kwargs)
        with torch.no_grad():
            vocab = self.model_config.hf_config.vocab_size
            ret[OUTPUT_KEY] = self_certainty_from_logit_stats(stats, ret["log_probs"], vocab)
        return ret

    @torch.no_grad()
    def _logit_stats(self, logits: torch.Tensor, label: torch.Tensor, temperature: torch.Tensor, batch):
        """``[3, b, s]`` path (i') statistics from the ``[b, s, V/tp]`` shard, labels and temperature ``[b, s]``.

        Read before ``super()``, which scales the logits in place; verl's log-probs (over the padded width)
        complete them afterwards, so no second logsumexp over the vocabulary is needed.
        """
        start = mpu.get_tensor_model_parallel_rank() * logits.shape[-1]
        return vocab_parallel_logit_stats(
            logits,
            label,
            vocab_start_index=start,
            vocab_size=self.model_config.hf_config.vocab_size,
            group=mpu.get_tensor_model_parallel_group(),
            temperature=safe_temperature(temperature),
            chunk_size_tokens=chunk_size(batch),
        )
