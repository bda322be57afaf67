"""FSDP/FSDP2 engine that also returns per-token self-certainty from the old-log-prob forward pass.

Registered in verl's ``EngineRegistry`` for ``language_model`` / ``fsdp``, ``fsdp2`` under vendor ``rlif``;
verl picks it when ``VERL_ENGINE_VENDOR=rlif`` reaches the workers (other model types and backends fall back
to verl's own engines). It computes only when the micro-batch carries ``calculate_self_certainty=True``,
which the ``rlif`` trainer sets for the old-log-prob pass and never for the reference pass.

Two paths (``verl_rlif.core.self_certainty``), both reusing the log-probs verl computes anyway:

* unfused kernels, path (i'): z_y - mean_V z from the same logits, with the same rolled labels, read before
  verl's ``prepare_model_outputs`` (which does not modify them); divided by the same per-token temperature
  and completed by verl's log-probs: one mean over the vocabulary, no second logsumexp;
* fused kernels (``use_fused_kernels=true``, no logits are ever built), path (iii): a forward hook on the
  decoder (``<hf model>.model``, the module verl's fused forward calls for the final hidden states h),
  registered by ``prepare_model_inputs`` only for a micro-batch that asks for self-certainty and removed
  when it fires, computes h.(W_y - w_bar) with the rolled labels verl passes to the kernel and the LM-head
  weight ``lm_head.weight`` (an FSDP2 DTensor shard is gathered); w_bar is cached until the weights change
  (``optimizer_step``, ``load_checkpoint``). verl's fused log-probs complete eq. 1. Nothing ``[tokens, V]``.

The result leaves as ``model_output["self_certainty"]``: a jagged tensor aligned with ``log_probs`` (position
t scores the prediction of token t+1). Both input layouts are handled: remove-padding (packed, incl. Ulysses
sequence parallel: the local shard is gathered and unpadded with verl's own ``_gather_and_unpad_packed``, as
verl does for log-probs) and padded. The vocabulary is the LM head's full width (HF ``config.vocab_size``).

verl internals relied on (pinned verl==0.9.1; see docs/how-it-plugs-into-verl.md): the signatures of
``prepare_model_inputs`` / ``prepare_model_outputs``, ``output_args`` keys ``temperature_rmpad`` /
``temperature`` / ``temperature_is_one`` / ``pad_size`` / ``input_ids_rmpad_rolled``, the fused model inputs
``shift_labels`` / ``temperature``, the fused output's ``log_probs``, ``_gather_and_unpad_packed``, and that
verl's fused forward (``models/transformers/dense_common.py``) feeds ``self.model(...)[0]`` and
``self.lm_head.weight`` to the kernel.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor
from verl.utils import tensordict_utils as tu
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_rlif.adapters.engine_flags import OUTPUT_KEY, VENDOR, chunk_size, safe_temperature, wants_self_certainty
from verl_rlif.core.self_certainty import (
    centred_logits,
    centred_logits_from_hidden_states,
    lm_head_mean_row,
    self_certainty_from_centred_logits,
)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor: FSDP2 (and FSDP2 + TP) hold DTensor shards; the full width is needed."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _fused(micro_batch) -> bool:
    return bool(tu.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False))


@EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"], vendor=VENDOR)
class RLIFFSDPEngineWithLMHead(FSDPEngineWithLMHead):
    """verl's FSDP LM engine plus ``model_output["self_certainty"]`` on request."""

    # -- weight version: w_bar is recomputed only after the weights change -------------------------------------
    def optimizer_step(self):
        self.__dict__.pop("_sc_weight_mean", None)
        return super().optimizer_step()

    def load_checkpoint(self, *args, **kwargs):
        self.__dict__.pop("_sc_weight_mean", None)
        return super().load_checkpoint(*args, **kwargs)

    # -- fused kernels: path (iii) from the decoder's output --------------------------------------------------
    def prepare_model_inputs(self, micro_batch):
        model_inputs, output_args = super().prepare_model_inputs(micro_batch)
        self._remove_hidden_state_hook()
        if _fused(micro_batch) and wants_self_certainty(micro_batch):
            labels = model_inputs.get("shift_labels")
            if labels is None:  # padded layout: verl's fused forward rolls input_ids itself
                labels = torch.roll(model_inputs["input_ids"], shifts=-1, dims=-1)
            self._install_hidden_state_hook(labels, chunk_size(micro_batch))
        return model_inputs, output_args

    def _hf_model(self):
        return getattr(self.module, "module", self.module)  # FSDP1 wraps; FSDP2 shards in place

    def _install_hidden_state_hook(self, labels: torch.Tensor, chunk: int) -> None:
        hf_model = self._hf_model()
        decoder, lm_head = getattr(hf_model, "model", None), getattr(hf_model, "lm_head", None)
        if not isinstance(decoder, torch.nn.Module) or lm_head is None:
            raise NotImplementedError(
                f"self-certainty with fused kernels needs a causal LM with .model and .lm_head, not "
                f"{type(hf_model).__name__}: set actor_rollout_ref.model.use_fused_kernels=false"
            )

        def capture(module, args, output):
            self._remove_hidden_state_hook()
            hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
            with torch.no_grad():
                weight = _full(lm_head.weight)  # FSDP1: the root's parameters are unsharded during forward
                if getattr(self, "_sc_weight_mean", None) is None:
                    self._sc_weight_mean = lm_head_mean_row(weight)
                self._sc_centred = centred_logits_from_hidden_states(
                    hidden, weight, labels, self._sc_weight_mean, chunk
                )
                self._sc_vocab = weight.shape[0]

        self._sc_centred = None
        self._sc_hook = decoder.register_forward_hook(capture)

    def _remove_hidden_state_hook(self) -> None:
        hook = self.__dict__.pop("_sc_hook", None)
        if hook is not None:
            hook.remove()

    # -- outputs ------------------------------------------------------------------------------------------------
    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        if not wants_self_certainty(micro_batch):
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        if _fused(micro_batch):
            model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
            model_output[OUTPUT_KEY] = self._fused_self_certainty(output, output_args, micro_batch)
            return model_output
        scaled, vocab = self._scaled_centred_logits(output.logits, output_args, micro_batch)
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        log_probs = model_output["log_probs"]
        values = self_certainty_from_centred_logits(scaled, log_probs.values().detach(), vocab)
        model_output[OUTPUT_KEY] = torch.nested.nested_tensor_from_jagged(values, log_probs.offsets())
        return model_output

    @torch.no_grad()
    def _scaled_centred_logits(self, logits: torch.Tensor, output_args: dict, micro_batch):
        """Path (i'): ``[nnz]`` fp32 (z_y - mean_V z) / tau, gathered and unpadded like verl's log-probs."""
        logits = _full(logits)  # FSDP2 with tensor parallel: the full vocabulary is needed
        unit = output_args.get("temperature_is_one", False)
        chunk = chunk_size(micro_batch)
        labels = output_args["input_ids_rmpad_rolled"]
        if "temperature_rmpad" in output_args:  # packed: [1, nnz (+pad), V], labels [nnz (+pad)]
            centred = centred_logits(logits.squeeze(0), labels, chunk_size_tokens=chunk)
            if not unit:
                centred /= safe_temperature(output_args["temperature_rmpad"])
            values = self._gather_and_unpad_packed(centred, output_args["pad_size"])
        else:  # padded: [bsz, max_len, V], labels packed [nnz], one temperature per sequence
            real = self._real_positions(micro_batch, logits.shape[1])
            padded_labels = torch.zeros(real.shape, dtype=labels.dtype, device=labels.device)
            padded_labels[real] = labels
            centred = centred_logits(logits, padded_labels, chunk_size_tokens=chunk)
            if not unit:
                centred /= safe_temperature(output_args["temperature"]).unsqueeze(-1)
            values = centred[real]
        return values, logits.shape[-1]

    @torch.no_grad()
    def _fused_self_certainty(self, output, output_args: dict, micro_batch) -> torch.Tensor:
        """Path (iii): jagged ``[bsz, (seq_len)]`` from the hook's h.(W_y - w_bar) and verl's fused log-probs."""
        self._remove_hidden_state_hook()
        centred = self.__dict__.pop("_sc_centred", None)
        if centred is None:
            raise RuntimeError(
                "self-certainty: the decoder's forward hook did not fire under fused kernels (has verl's fused "
                "forward changed?); set actor_rollout_ref.model.use_fused_kernels=false"
            )
        temperature = safe_temperature(micro_batch["temperature"])
        log_probs = output.log_probs
        offsets = micro_batch["input_ids"].offsets()
        if "pad_size" in output_args:  # packed: [1, nnz (+pad)], this rank's Ulysses shard
            local = self_certainty_from_centred_logits(
                centred.squeeze(0), log_probs.squeeze(0), self._sc_vocab, temperature
            )
            values = self._gather_and_unpad_packed(local, output_args["pad_size"])
        else:  # padded: [bsz, max_len]
            real = self._real_positions(micro_batch, log_probs.shape[1])
            values = self_certainty_from_centred_logits(centred[real], log_probs[real], self._sc_vocab, temperature)
        return torch.nested.nested_tensor_from_jagged(values, offsets)

    @staticmethod
    def _real_positions(micro_batch, max_len: int) -> torch.Tensor:
        """``[bsz, max_len]`` bool: the positions of the padded layout that hold a real token."""
        lengths = micro_batch["input_ids"].offsets().diff()
        return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(1)
