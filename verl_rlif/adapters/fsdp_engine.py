"""FSDP/FSDP2 engine that also returns per-token self-certainty from the old-log-prob forward pass.

Registered in verl's ``EngineRegistry`` for ``language_model`` / ``fsdp``, ``fsdp2`` under vendor ``rlif``;
verl picks it when ``VERL_ENGINE_VENDOR=rlif`` reaches the workers (other model types and backends fall back
to verl's own engines). It computes only when the micro-batch carries ``calculate_self_certainty=True``,
which the ``rlif`` trainer sets for the old-log-prob pass and never for the reference pass.

Self-certainty is computed from the same logits as log-probs, with the same per-token temperature, before
verl's ``prepare_model_outputs`` (which does not modify them), and leaves as ``model_output["self_certainty"]``:
a jagged tensor aligned with ``log_probs`` (position t scores the prediction of token t+1). Both input layouts
are handled: remove-padding (packed, incl. Ulysses sequence parallel: gathered and unpadded with verl's own
``_gather_and_unpad_packed``) and padded. The vocabulary is the model's full logit width (HF
``config.vocab_size``), the same ``V`` the Megatron engine uses after removing its TP padding.

verl internals relied on (pinned verl==0.9.1; see docs/how-it-plugs-into-verl.md): ``prepare_model_outputs``'s
signature, ``output_args`` keys ``temperature_rmpad``/``temperature``/``temperature_is_one``/``pad_size``,
``_gather_and_unpad_packed`` and ``micro_batch["input_ids"].offsets()``.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor
from verl.utils import tensordict_utils as tu
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_rlif.adapters.engine_flags import (
    FUSED_KERNELS_ERROR,
    OUTPUT_KEY,
    VENDOR,
    chunk_size,
    safe_temperature,
    wants_self_certainty,
)
from verl_rlif.core.self_certainty import self_certainty_from_logits


@EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=["cuda", "npu"], vendor=VENDOR)
class RLIFFSDPEngineWithLMHead(FSDPEngineWithLMHead):
    """verl's FSDP LM engine plus ``model_output["self_certainty"]`` on request."""

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        if not wants_self_certainty(micro_batch):
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        if tu.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False):
            raise NotImplementedError(FUSED_KERNELS_ERROR)
        self_certainty = self._self_certainty(output.logits, output_args, micro_batch)
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        model_output[OUTPUT_KEY] = self_certainty
        return model_output

    @torch.no_grad()
    def _self_certainty(self, logits: torch.Tensor, output_args: dict, micro_batch) -> torch.Tensor:
        """Jagged ``[bsz, (seq_len)]`` fp32 self-certainty per position."""
        if isinstance(logits, DTensor):  # FSDP2 with tensor parallel: the full vocabulary is needed
            logits = logits.full_tensor()
        offsets = micro_batch["input_ids"].offsets()
        unit = output_args.get("temperature_is_one", False)
        chunk = chunk_size(micro_batch)
        if "temperature_rmpad" in output_args:  # packed: [1, nnz (+pad), V]
            temperature = 1.0 if unit else safe_temperature(output_args["temperature_rmpad"])
            packed = self_certainty_from_logits(logits.squeeze(0), temperature=temperature, chunk_size_tokens=chunk)
            values = self._gather_and_unpad_packed(packed, output_args["pad_size"])
        else:  # padded: [bsz, max_len, V], one temperature per sequence
            temperature = 1.0 if unit else safe_temperature(output_args["temperature"]).unsqueeze(-1)
            padded = self_certainty_from_logits(logits, temperature=temperature, chunk_size_tokens=chunk)
            lengths = offsets.diff()
            values = padded[torch.arange(padded.shape[1], device=padded.device) < lengths.unsqueeze(1)]
        return torch.nested.nested_tensor_from_jagged(values, offsets)
