"""The FSDP engine's old-log-prob forward pass on one process, for tests and ``bench/`` (no device mesh, no Ray).

``RLIFFSDPEngineWithLMHead`` is built with ``__new__`` (its ``__init__`` needs a device mesh); the attributes set
are the ones verl's input/output preparation reads. :func:`old_log_prob_pass` is ``forward_step``'s body without
the move to the accelerator and autocast: verl's ``prepare_model_inputs``, the model forward (verl's fused
forward when :func:`with_fused_kernels` patched it), verl's ``prepare_model_outputs``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.models.transformers.monkey_patch import patch_forward_with_backends
from verl.utils import tensordict_utils as tu

from verl_rlif.adapters.fsdp_engine import RLIFFSDPEngineWithLMHead


def make_engine(model, sp_size: int = 1, pad_to_length: bool = False) -> RLIFFSDPEngineWithLMHead:
    engine = RLIFFSDPEngineWithLMHead.__new__(RLIFFSDPEngineWithLMHead)
    engine.module = model
    engine.use_ulysses_sp, engine.ulysses_sequence_parallel_size = sp_size > 1, sp_size
    engine.pad_to_length, engine.pad_to_length_bucket = pad_to_length, 16
    return engine


def make_micro_batch(
    seqs: list[torch.Tensor],
    remove_padding: bool,
    self_certainty: bool = True,
    fused: bool = False,
    temperature: float = 0.7,
    chunk_size_tokens: int = 4,
) -> TensorDict:
    """A micro-batch as verl's actor builds it for the old-log-prob pass: jagged ``input_ids``/``position_ids``."""

    def nested(xs):
        return torch.nested.as_nested_tensor(xs, layout=torch.jagged)

    batch = TensorDict(
        {"input_ids": nested(seqs), "position_ids": nested([torch.arange(len(s)) for s in seqs])},
        batch_size=[len(seqs)],
    )
    tu.assign_non_tensor(
        batch,
        use_remove_padding=remove_padding,
        use_fused_kernels=fused,
        calculate_entropy=False,
        calculate_self_certainty=self_certainty,
        self_certainty_chunk_size_tokens=chunk_size_tokens,
        temperature=temperature,
        pad_token_id=0,
    )
    return batch


def with_fused_kernels(model):
    """A copy of ``model`` whose forward is verl's fused one (``torch`` backend; it never builds logits).

    verl's patch replaces ``model.__class__.forward``, so the copy gets a class of its own first.
    """
    fused_cls = type(f"Fused{type(model).__name__}", (type(model),), {})
    fused = fused_cls(model.config).eval()
    fused.load_state_dict(model.state_dict())
    patch_forward_with_backends(fused, use_fused_kernels=True, fused_kernels_backend="torch")
    return fused


@torch.no_grad()
def old_log_prob_pass(engine, model, micro_batch) -> dict:
    inputs, output_args = engine.prepare_model_inputs(micro_batch)
    raw = model(**inputs, use_cache=False)
    return engine.prepare_model_outputs(raw, output_args, micro_batch, None)
