"""Megatron engine that also returns per-token self-certainty, from vocabulary-parallel logits or hidden states.

Registered in verl's ``EngineRegistry`` for ``language_model`` / ``megatron`` / ``cuda`` under vendor ``rlif``
(selected by ``VERL_ENGINE_VENDOR=rlif``). It computes only for a micro-batch that carries
``calculate_self_certainty=True`` (the ``rlif`` trainer's old-log-prob pass). Two paths
(``verl_rlif.core.self_certainty``), both completed by verl's own log-probs over the padded width:

* unfused kernels, path (i'): verl binds ``_lm_head_logits_processor`` into each micro-batch's forward on the
  last pipeline stage; from this rank's ``[.., V/tp]`` shard, before ``super()`` scales it in place, we take z_y,
  the mean over the true vocabulary (columns at or beyond the HF ``config.vocab_size`` are Megatron's TP padding)
  and the padding columns' logsumexp, combined by one all-gather of three numbers per token over the
  tensor-parallel group. The processor sees the context-parallel-local chunk of the sequence, with sequence
  parallelism already gathered; verl gathers every returned key across CP and unpads it, as for ``log_probs``.
* fused kernels (``use_fused_kernels=true``; no logits are ever built), path (iii): ``forward_step`` registers a
  forward hook (with kwargs) on the last stage's ``GPTModel`` for that one forward and removes it afterwards.
  verl's fused forward (``models/mcore/model_forward_fused.py``) calls that module with the packed (THD) rolled
  ``labels`` and the scalar ``temperature`` it feeds its kernel, and returns ``hidden_states`` (the decoder's
  output after the final norm, this rank's sequence-parallel slice) next to the fused ``log_probs``. The hook
  gathers the slice over the tensor-parallel group (as verl does before its kernel), and from the output
  weight's vocabulary shard (``output_layer.weight``, or the word embeddings when tied) takes z_y = h.W_y, h.w_bar
  and the padding rows' logsumexp with the same one all-gather; this rank's true-row sum (w_bar x V / tp shards)
  is cached until the weights change (``optimizer_step``, ``load_checkpoint``). ``forward_step`` then unpacks the
  values with verl's ``postprocess_thd_engine``, exactly as verl unpacks ``log_probs``. Nothing ``[tokens, V]``.
  Static context parallelism needs nothing more (the hook sees this rank's CP rows, ``postprocess_thd_engine``
  gathers them with verl's CP layout); dynamic context parallelism and vision-language models are refused under
  fused kernels with the switch to turn off; pipeline parallelism needs nothing (only the stage with
  ``post_process`` scores).

verl internals relied on (pinned verl==0.9.1): ``_lm_head_logits_processor(logits, label, temperature, *,
batch, ...)``, ``forward_step(batch_iter, ...)``, the fused forward's call of the ``GPTModel`` with ``labels`` /
``temperature`` (or ``output_processor_context.temperature``) / ``packed_seq_params`` and its output's
``hidden_states`` / ``log_probs``, ``postprocess_thd_engine`` and ``_get_context_parallel_layout``; see
docs/how-it-plugs-into-verl.md.
"""

from __future__ import annotations

import itertools
from functools import partial

import torch
import torch.distributed as dist
from megatron.core import parallel_state as mpu
from megatron.core.models.gpt import GPTModel
from verl.models.mcore.util import postprocess_thd_engine
from verl.utils.megatron_utils import unwrap_model
from verl.workers.engine import EngineRegistry, MegatronEngineWithLMHead

from verl_rlif.adapters.engine_flags import (
    MEGATRON_FUSED_DYNAMIC_CP_ERROR,
    MEGATRON_FUSED_MODEL_ERROR,
    OUTPUT_KEY,
    VENDOR,
    chunk_size,
    safe_temperature,
    wants_self_certainty,
)
from verl_rlif.core.self_certainty import (
    self_certainty_from_logit_stats,
    vocab_parallel_hidden_stats,
    vocab_parallel_logit_stats,
    vocab_shard_row_sum,
)

if MegatronEngineWithLMHead is None:  # verl.workers.engine sets it to None when Megatron fails to import
    raise ImportError("verl's Megatron engine is unavailable in this environment (megatron-core missing?)")

HOOK_DID_NOT_FIRE = (
    "self-certainty: the output model's forward hook did not fire under fused kernels (has verl's fused forward "
    "changed?); set actor_rollout_ref.model.use_fused_kernels=false"
)


def output_weight(model: GPTModel) -> torch.Tensor:
    """The ``[V_pad/tp, H]`` vocabulary shard verl's fused forward multiplies: the output layer's, else the word
    embeddings' (tied embeddings on a single pipeline stage allocate no output weight)."""
    layer = getattr(model, "output_layer", None)
    if layer is not None and layer.weight is not None:
        return layer.weight
    return model.embedding.word_embeddings.weight


def gather_sequence_parallel(hidden: torch.Tensor) -> torch.Tensor:
    """``[s/tp, b, H]`` -> ``[s, b, H]``: the slices of the tensor-parallel group in rank order, as Megatron's
    ``gather_from_sequence_parallel_region`` gathers them for verl's kernel (written here: that one needs CUDA)."""
    group = mpu.get_tensor_model_parallel_group()
    slices = [torch.empty_like(hidden) for _ in range(dist.get_world_size(group))]
    dist.all_gather(slices, hidden.contiguous(), group=group)
    return torch.cat(slices, dim=0)


def fused_temperature(forward_kwargs: dict) -> float:
    """The scalar temperature verl's fused forward gives its kernel: a ``temperature`` keyword (megatron-core
    < 0.18, verl's patched ``GPTModel.forward``) or ``output_processor_context.temperature`` (>= 0.18)."""
    if "temperature" in forward_kwargs:
        return float(forward_kwargs["temperature"])
    return float(forward_kwargs["output_processor_context"].temperature)


@EngineRegistry.register(model_type="language_model", backend="megatron", device="cuda", vendor=VENDOR)
class RLIFMegatronEngineWithLMHead(MegatronEngineWithLMHead):
    """verl's Megatron LM engine plus ``self_certainty`` in the model outputs on request."""

    # -- weight version: the output shard's row sum is recomputed only after the weights change ---------------
    def optimizer_step(self):
        self.__dict__.pop("_sc_row_sum", None)
        return super().optimizer_step()

    def load_checkpoint(self, *args, **kwargs):
        self.__dict__.pop("_sc_row_sum", None)
        return super().load_checkpoint(*args, **kwargs)

    # -- fused kernels: path (iii) from the last stage's hidden states ------------------------------------------
    def forward_step(self, batch_iter, model, logits_processor_func, postprocess_micro_batch_func):
        batch = next(batch_iter)
        batch_iter = itertools.chain([batch], batch_iter)
        scored = self._fused_scoring_model(model, batch)
        if scored is None:
            return super().forward_step(batch_iter, model, logits_processor_func, postprocess_micro_batch_func)
        captured = {}
        hook = scored.register_forward_hook(partial(self._capture_fused, captured, chunk_size(batch)), with_kwargs=True)
        try:
            output, postprocess = super().forward_step(
                batch_iter, model, logits_processor_func, postprocess_micro_batch_func
            )
        finally:
            hook.remove()
        if "values" not in captured:
            raise RuntimeError(HOOK_DID_NOT_FIRE)
        input_ids = batch["input_ids"]  # jagged [bsz, (seq_len)]: verl unpacks log_probs with the same offsets
        output[OUTPUT_KEY] = postprocess_thd_engine(  # gathers across context-parallel ranks, as for log_probs
            captured["values"],
            captured["packed_seq_params"],
            input_ids,
            input_ids.shape[0],
            post_process=True,
            cp_layout=self._get_context_parallel_layout(scored),
        )
        return output, postprocess

    def _fused_scoring_model(self, model, batch) -> GPTModel | None:
        """The ``GPTModel`` to hook for this micro-batch, or ``None`` (no fused kernels, no flag, not last stage)."""
        if not (self.engine_config.use_fused_kernels and wants_self_certainty(batch)):
            return None
        if self.engine_config.dynamic_context_parallel:
            raise NotImplementedError(MEGATRON_FUSED_DYNAMIC_CP_ERROR)
        unwrapped = unwrap_model(model)
        if not isinstance(unwrapped, GPTModel):
            raise NotImplementedError(f"{MEGATRON_FUSED_MODEL_ERROR} (got {type(unwrapped).__name__})")
        return unwrapped if unwrapped.post_process else None

    @torch.no_grad()
    def _capture_fused(self, captured: dict, chunk: int, module: GPTModel, args, kwargs, output) -> None:
        """Forward hook: ``[1, s]`` packed self-certainty from the fused forward's inputs and outputs.

        h ``[s(/tp), 1, H]`` and the labels ``[1, s]`` are flattened in the same order as verl's kernel flattens
        them (b = 1 in the packed layout); the fused log-probs ``[s]`` are over the padded width.
        """
        hidden = output.hidden_states.detach()
        if module.config.sequence_parallel:
            hidden = gather_sequence_parallel(hidden)
        weight = output_weight(module)
        vocab = self.model_config.hf_config.vocab_size
        start = mpu.get_tensor_model_parallel_rank() * weight.shape[0]
        if getattr(self, "_sc_row_sum", None) is None:
            self._sc_row_sum = vocab_shard_row_sum(weight, start, vocab)
        stats = vocab_parallel_hidden_stats(
            hidden.reshape(-1, hidden.shape[-1]),
            weight,
            kwargs["labels"].reshape(-1),
            vocab_start_index=start,
            vocab_size=vocab,
            group=mpu.get_tensor_model_parallel_group(),
            temperature=fused_temperature(kwargs),  # verl clamps it to >= 1e-8
            row_sum=self._sc_row_sum,
            chunk_size_tokens=chunk,
        )
        values = self_certainty_from_logit_stats(stats, output.log_probs.detach().reshape(-1), vocab)
        captured["values"] = values.unsqueeze(0)
        captured["packed_seq_params"] = kwargs["packed_seq_params"]

    # -- unfused kernels: path (i') from the logit shards ---------------------------------------------------------
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
