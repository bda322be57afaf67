"""Per-GPU memory estimate of a composed verl config, for ``verl-rlif check`` (docs/memory.md).

Two phases share every GPU in verl's colocated (hybrid) mode:

* training: the actor's update (weights + gradients + activations of the micro-batches in flight + the logits of
  one micro-batch, none with fused kernels), then its optimizer step (weights + gradients + optimizer states, the
  activations freed); the log-prob passes (old and reference log-probs) are forward-only and smaller, so they are
  not a phase here;
* rollout: vLLM's share (``gpu_memory_utilization`` x the GPU) next to whatever training leaves on the GPU; under
  ``trainer.v1.trainer_mode=rlif_separate_async`` vLLM runs alone on its standalone pool ("rollout pool").

Bytes per parameter follow what verl 0.9.1 allocates (``verl.utils.megatron_utils.offload_megatron_model_to_cpu``
lists Megatron's storage): Megatron keeps bf16 weights, an fp32 gradient buffer (verl sets
``grad_reduce_in_fp32`` unless low-precision main grads are asked for) and fp32 master weights + Adam moments
(12 bytes), sharded over data parallel by the distributed optimizer; FSDP keeps fp32 weights, fp32 gradients and
Adam moments, all sharded over the FSDP group. Activations per token and layer are Megatron-LM's theoretical
formula (Korthikanti et al. 2022, table 2, as in Megatron-LM's ``theoretical_memory_usage.py``, which
megatron-core's wheel does not ship): ``(18 + 4 * ffn / h) * h`` bytes with flash attention, the MLP term scaled
by 1.5 for SwiGLU's gate projection; full recompute keeps only each layer's bf16 input. Pure Python: no verl,
torch or GPU needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

GIB = 1024**3
ROLLOUT_POOL = "rollout pool"  # the phase of rlif_separate_async's standalone rollout GPUs
DEFAULT_GPU_GIB = 80.0
# CUDA context, NCCL buffers, the sleeping vLLM engine's remnants and allocator fragmentation, per phase.
RUNTIME_OVERHEAD_GIB = 3.0
LOGIT_BYTES = 4  # fp32 logits of one micro-batch for the log-softmax (Megatron-LM's formula counts the same)


@dataclass(frozen=True)
class ModelShape:
    """A dense decoder-only transformer: what the estimate needs from its config.json."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = True
    gated_mlp: bool = True  # SwiGLU (Llama, Qwen): three MLP matrices

    @property
    def layer_params(self) -> int:
        head_dim = self.hidden // self.heads
        qkv = self.hidden * (self.heads + 2 * self.kv_heads) * head_dim
        bias = (self.heads + 2 * self.kv_heads) * head_dim if self.qkv_bias else 0
        attention = qkv + bias + self.heads * head_dim * self.hidden
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.ffn
        return attention + mlp + 2 * self.hidden  # + two RMSNorms

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * self.layer_params + embeddings + self.hidden

    def activation_bytes_per_token_layer(self) -> float:
        """Megatron-LM's per-layer activation bytes per token (flash attention, no recompute), before TP."""
        ffn = self.ffn * (1.5 if self.gated_mlp else 1.0)
        return (18 + 4 * ffn / self.hidden) * self.hidden


# The shipped configs' models and verl's example models, from their config.json (for a path that is not local).
KNOWN_SHAPES = {
    "qwen2.5-7b": ModelShape(28, 3584, 18944, 28, 4, 152064),
    "qwen2-7b": ModelShape(28, 3584, 18944, 28, 4, 152064),
    "qwen2.5-32b": ModelShape(64, 5120, 27648, 40, 8, 152064),
    "qwen2.5-72b": ModelShape(80, 8192, 29568, 64, 8, 152064),
    "qwen2-72b": ModelShape(80, 8192, 29568, 64, 8, 152064),
    "llama-3.1-70b": ModelShape(80, 8192, 28672, 64, 8, 128256, qkv_bias=False),
    "llama-3.1-8b": ModelShape(32, 4096, 14336, 32, 8, 128256, qkv_bias=False),
}
_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


class NotEstimated(ValueError):
    """The estimate cannot be made for this config; the message says why and what to do."""


class UnknownModel(NotEstimated):
    """The estimate cannot know the model's shape; the message says why and what to do."""


_SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")


def _read_config_json(config_file: str) -> dict:
    """A model's config.json as a mapping; :class:`UnknownModel` naming the file when it is not one."""
    try:
        with open(config_file, encoding="utf-8") as handle:
            hf = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnknownModel(f"{config_file} cannot be read as JSON: {exc}") from exc
    if not isinstance(hf, dict):
        raise UnknownModel(f"{config_file} holds a JSON {type(hf).__name__}, not an object")
    return hf


def model_shape(path: str) -> ModelShape:
    """The shape from ``path/config.json`` when the path is a local directory, else from :data:`KNOWN_SHAPES`
    (matched on the last path component, lower case, without ``-Instruct``)."""
    config_file = os.path.join(path, "config.json")
    if os.path.isfile(config_file):
        hf = _read_config_json(config_file)
        hf = hf.get("text_config", hf)  # vision-language models nest the language model's config
        if any(hf.get(key) for key in _MOE_KEYS):
            raise UnknownModel(f"{path} is a mixture-of-experts model: the estimate covers dense models only")
        missing = [key for key in _SHAPE_KEYS if not isinstance(hf.get(key), int) or isinstance(hf.get(key), bool)]
        if missing:
            raise UnknownModel(f"{config_file} lacks an integer {', '.join(missing)}: the model's shape is unknown")
        heads = hf["num_attention_heads"]
        return ModelShape(
            layers=hf["num_hidden_layers"],
            hidden=hf["hidden_size"],
            ffn=hf["intermediate_size"],
            heads=heads,
            kv_heads=hf.get("num_key_value_heads") or heads,
            vocab=hf["vocab_size"],
            tied_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=bool(hf.get("attention_bias", hf.get("model_type") in ("qwen2", "qwen2_vl"))),
            gated_mlp=hf.get("hidden_act", "silu") in ("silu", "swiglu"),
        )
    name = os.path.basename(path.rstrip("/")).lower().removesuffix("-instruct")
    if name in KNOWN_SHAPES:
        return KNOWN_SHAPES[name]
    raise UnknownModel(
        f"no local config.json at {path!r} and {name!r} is not one of {sorted(KNOWN_SHAPES)}: point "
        "actor_rollout_ref.model.path (or RLIF_MODEL_PATH) at a local copy of the model for a memory estimate"
    )


@dataclass
class Phase:
    """One phase's bytes per GPU, by part (insertion order is the print order)."""

    name: str
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.parts.values())


@dataclass
class Estimate:
    summary: str
    phases: list[Phase]
    gpu_gib: float

    def over(self) -> list[Phase]:
        return [phase for phase in self.phases if phase.total > self.gpu_gib * GIB]

    def lines(self) -> list[str]:
        """The breakdown ``verl-rlif check`` prints, one line per phase, in GiB."""
        out = [f"memory per GPU (estimate, {self.gpu_gib:g} GiB GPU; docs/memory.md): {self.summary}"]
        for phase in self.phases:
            parts = " + ".join(f"{name} {value / GIB:.1f}" for name, value in phase.parts.items() if value)
            share = phase.total / (self.gpu_gib * GIB)
            notes = f" ({'; '.join(phase.notes)})" if phase.notes else ""
            out.append(f"  {phase.name:<12} {phase.total / GIB:5.1f} GiB ({share:.0%}) = {parts}{notes}")
        return out

    def warnings(self) -> list[str]:
        return [
            f"estimated {phase.name} memory {phase.total / GIB:.1f} GiB per GPU exceeds the {self.gpu_gib:g} GiB "
            f"GPU (--gpu-memory-gib): {_advice(phase.name)}"
            for phase in self.over()
        ]


def _advice(phase: str) -> str:
    if phase == ROLLOUT_POOL:
        return "lower actor_rollout_ref.rollout.gpu_memory_utilization"
    if phase == "rollout":
        return (
            "offload the actor during rollout (actor_rollout_ref.actor.megatron.param_offload / optimizer_offload, "
            "or fsdp_config.*_offload) or lower actor_rollout_ref.rollout.gpu_memory_utilization"
        )
    return (
        "turn on recompute (Megatron: actor_rollout_ref.actor.megatron.override_transformer_config."
        "recompute_granularity=full, recompute_method=uniform, recompute_num_layers=1; FSDP: "
        "actor_rollout_ref.model.enable_gradient_checkpointing=true), lower ppo_max_token_len_per_gpu, "
        "or add optimizer offload / model parallelism"
    )


def _get(config: DictConfig, key: str, default=None):
    value = OmegaConf.select(config, key, default=default)
    return default if value is None else value


def _verl_value(config: DictConfig, key: str):
    """A key verl's trainer configs always set (ppo_trainer.yaml, ppo_megatron_trainer.yaml): read, never
    defaulted here, so verl stays the one home of its defaults."""
    value = OmegaConf.select(config, key)
    if value is None:
        raise NotEstimated(f"{key} is not set (verl's trainer configs set it): compose the config on verl's")
    return value


def _fused_kernels(config: DictConfig) -> bool:
    """Whether the actor computes log-probs with verl's fused kernels, which never build ``[tokens, V]`` logits.
    Megatron's engine turns them off without remove-padding (``_maybe_enable_fused_kernels``)."""
    model = "actor_rollout_ref.model"
    fused = bool(_get(config, f"{model}.use_fused_kernels", False))
    if _get(config, "actor_rollout_ref.actor.strategy") == "megatron":
        fused = fused and bool(_get(config, f"{model}.use_remove_padding", False))
    return fused


def _tokens_per_micro_batch(config: DictConfig, split: int) -> int:
    """Tokens one GPU holds in one training micro-batch: the token budget, or micro-batch x sequence length, over
    the sequence split (Ulysses or context parallel)."""
    actor = "actor_rollout_ref.actor"
    if _get(config, f"{actor}.use_dynamic_bsz", False):
        return int(_verl_value(config, f"{actor}.ppo_max_token_len_per_gpu"))
    sequence = int(_verl_value(config, "data.max_prompt_length")) + int(_verl_value(config, "data.max_response_length"))
    micro = int(_get(config, f"{actor}.ppo_micro_batch_size_per_gpu", 1))
    return max(1, micro * sequence // split)


def _uses_reference(config: DictConfig) -> bool:
    return bool(_get(config, "actor_rollout_ref.actor.use_kl_loss", False)) or bool(
        _get(config, "algorithm.use_kl_in_reward", False)
    )


def _rollout_phase(config: DictConfig, gpu_bytes: float, resident: dict[str, float], shape: ModelShape) -> Phase:
    """vLLM next to what training leaves resident; under rlif_separate_async vLLM alone, on its own pool's GPUs."""
    rollout = "actor_rollout_ref.rollout"
    utilization = float(_verl_value(config, f"{rollout}.gpu_memory_utilization"))
    rollout_tp = int(_get(config, f"{rollout}.tensor_model_parallel_size", 1))
    share = utilization * gpu_bytes
    weights = 2 * shape.params / rollout_tp
    if _get(config, "trainer.v1.trainer_mode") == "rlif_separate_async":
        phase = Phase(ROLLOUT_POOL, {"vLLM": share, "runtime": RUNTIME_OVERHEAD_GIB * GIB})
        pool = int(_get(config, f"{rollout}.nnodes", 0)) * int(_get(config, f"{rollout}.n_gpus_per_node", 0))
        phase.notes.append(f"per GPU of the standalone rollout pool ({pool} GPUs), none of the training's")
    else:
        phase = Phase("rollout", {"vLLM": share, **resident, "runtime": RUNTIME_OVERHEAD_GIB * GIB})
    phase.notes.append(
        f"vLLM TP{rollout_tp}: weights {weights / GIB:.1f} + KV cache {max(0.0, share - weights) / GIB:.1f}"
    )
    if weights > 0.8 * share:
        phase.notes.append("little KV cache left: raise rollout TP or gpu_memory_utilization")
    return phase


def _training_phase(
    forward: dict[str, float], step: dict[str, float], optimizer_offload: bool, fused: bool, note: str
) -> Phase:
    """The training phase's peak, bytes per GPU: the update (``forward``: weights, grads, activations, logits, ref) or
    the optimizer step after the activations are freed (``step``: weights, grads, optimizer, ref), whichever is
    larger, plus the runtime overhead."""
    optimizer = step["optimizer"]
    update = Phase("training", dict(forward))
    if sum(step.values()) > update.total:
        update.parts = dict(step)
        update.notes.append("peak at the optimizer step")
    elif not optimizer_offload:
        update.parts["optimizer"] = optimizer
    update.parts["runtime"] = RUNTIME_OVERHEAD_GIB * GIB
    update.notes.append(note)
    if fused:
        update.notes.append("fused kernels: no logits")
    if optimizer_offload and "optimizer" not in update.parts:
        update.notes.append(f"optimizer {optimizer / GIB:.1f} offloaded, loaded for the step")
    return update


def _megatron(config: DictConfig, shape: ModelShape, world: int, gpu_bytes: float) -> Estimate:
    actor = "actor_rollout_ref.actor.megatron"
    tp = int(_get(config, f"{actor}.tensor_model_parallel_size", 1))
    pp = int(_get(config, f"{actor}.pipeline_model_parallel_size", 1))
    cp = int(_get(config, f"{actor}.context_parallel_size", 1))
    vpp = _get(config, f"{actor}.virtual_pipeline_model_parallel_size")
    dp = max(1, world // (tp * pp * cp))
    # The heaviest stage: its share of the layers plus one embedding (first stage) or output layer (last stage).
    stage_params = (-(-shape.layers // pp) * shape.layer_params + shape.vocab * shape.hidden) / tp
    weights, grads = 2 * stage_params, 4 * stage_params
    low_precision = _get(config, "actor_rollout_ref.actor.optim.use_low_precision_main_grads", False)
    if low_precision:
        grads = 2 * stage_params
    distributed = bool(_verl_value(config, f"{actor}.use_distributed_optimizer"))
    optimizer = 12 * stage_params / (dp if distributed else 1)

    tokens = _tokens_per_micro_batch(config, cp)
    fused = _fused_kernels(config)
    layers = -(-shape.layers // pp)
    full_layer = shape.activation_bytes_per_token_layer() * tokens / tp  # sequence parallel splits it too
    in_flight = pp if vpp is None else pp * (1 + (pp - 1) / (pp * int(vpp)))  # Megatron-LM's interleave penalty
    recompute = _get(config, f"{actor}.override_transformer_config.recompute_granularity")
    method = _get(config, f"{actor}.override_transformer_config.recompute_method")
    group = int(_get(config, f"{actor}.override_transformer_config.recompute_num_layers", 1) or 1)
    if recompute == "full":
        layer_input = 2 * shape.hidden * tokens / tp
        if method == "block":  # the first `group` layers of a stage recomputed, the rest stored whole
            stored = min(group, layers) * layer_input + max(0, layers - group) * full_layer
            working = full_layer
        else:  # uniform: one checkpoint per group of layers, one group's activations rebuilt at a time
            stored = -(-layers // group) * layer_input
            working = min(group, layers) * full_layer
        first_stage = stored * in_flight + working
        mode = f"full recompute ({method or 'uniform'}, {group} layer(s))"
    else:
        first_stage = layers * full_layer * in_flight
        mode = "no recompute" if recompute is None else f"{recompute} recompute"
    logits = 0.0 if fused else LOGIT_BYTES * tokens * shape.vocab / tp  # on the last stage only
    per_micro_batch = first_stage / in_flight if recompute != "full" else stored + working
    if pp == 1 or first_stage >= per_micro_batch + logits:
        activations, logits_part, stage = first_stage, (logits if pp == 1 else 0.0), "stage 0"
    else:  # the last stage holds one micro-batch in flight, but the logits too
        activations, logits_part, stage = per_micro_batch, logits, "last stage"

    param_offload = bool(_get(config, f"{actor}.param_offload", False))
    optimizer_offload = bool(_get(config, f"{actor}.optimizer_offload", False))
    reference = 0.0
    if _uses_reference(config) and not _get(config, "actor_rollout_ref.ref.megatron.param_offload", False):
        reference = weights  # the reference model has the actor's TP/PP, in bf16
    update = _training_phase(
        {"weights": weights, "grads": grads, "activations": activations, "logits": logits_part, "ref": reference},
        {"weights": weights, "grads": grads, "optimizer": optimizer, "ref": reference},
        optimizer_offload,
        fused,
        f"{tokens} tokens/micro-batch, {mode}, {in_flight:g} micro-batch(es) in flight, {stage}",
    )

    resident: dict[str, float] = {}
    if not param_offload:
        resident["actor weights+grads"] = weights + grads
    if not optimizer_offload:
        resident["optimizer"] = optimizer
    if reference:
        resident["ref"] = reference
    summary = f"{shape.params / 1e9:.1f}B params, megatron TP{tp} PP{pp} CP{cp} DP{dp}"
    return Estimate(summary, [update, _rollout_phase(config, gpu_bytes, resident, shape)], gpu_bytes / GIB)


def _fsdp(config: DictConfig, shape: ModelShape, world: int, gpu_bytes: float) -> Estimate:
    fsdp = "actor_rollout_ref.actor.fsdp_config"
    size = int(_verl_value(config, f"{fsdp}.fsdp_size"))
    shard = world if size <= 0 else min(size, world)
    sp = int(_get(config, "actor_rollout_ref.actor.ulysses_sequence_parallel_size", 1))
    weights = 4 * shape.params / shard  # verl's FSDP actor keeps fp32 weights (bf16 compute)
    grads = 4 * shape.params / shard
    optimizer = 8 * shape.params / shard  # Adam moments; the fp32 weights are the master copy
    gathered = 2 * 2 * max(shape.layer_params, shape.vocab * shape.hidden)  # bf16 unit in use + one prefetched

    tokens = _tokens_per_micro_batch(config, sp)
    full_layer = shape.activation_bytes_per_token_layer() * tokens
    if _get(config, "actor_rollout_ref.model.enable_gradient_checkpointing", False):
        activations = shape.layers * 2 * shape.hidden * tokens + full_layer
        mode = "gradient checkpointing"
    else:
        activations = shape.layers * full_layer
        mode = "no gradient checkpointing"
    fused = _fused_kernels(config)
    logits = 0.0 if fused else LOGIT_BYTES * tokens * shape.vocab

    param_offload = bool(_get(config, f"{fsdp}.param_offload", False))
    optimizer_offload = bool(_get(config, f"{fsdp}.optimizer_offload", False))
    reference = 0.0
    if _uses_reference(config) and not _get(config, "actor_rollout_ref.ref.fsdp_config.param_offload", False):
        reference = 2 * shape.params / shard  # bf16
    update = _training_phase(
        {
            "weights": weights + gathered,
            "grads": grads,
            "activations": activations,
            "logits": logits,
            "ref": reference,
        },
        {"weights": weights, "grads": grads, "optimizer": optimizer, "ref": reference},  # gathered shards freed
        optimizer_offload,
        fused,
        f"{tokens} tokens/micro-batch, {mode}, FSDP over {shard} GPUs",
    )

    resident: dict[str, float] = {}  # gradients are freed after the step (zero_grad sets them to None)
    if not param_offload:
        resident["actor weights"] = weights
    if not optimizer_offload:
        resident["optimizer"] = optimizer
    if reference:
        resident["ref"] = reference
    summary = f"{shape.params / 1e9:.1f}B params, FSDP over {shard} GPUs, Ulysses SP{sp}"
    return Estimate(summary, [update, _rollout_phase(config, gpu_bytes, resident, shape)], gpu_bytes / GIB)


def estimate(config: DictConfig, gpu_gib: float = DEFAULT_GPU_GIB) -> Estimate:
    """The per-GPU estimate of a composed verl config; :class:`NotEstimated` (:class:`UnknownModel` when the model's
    shape is unknown) when it cannot be made."""
    shape = model_shape(str(_get(config, "actor_rollout_ref.model.path", "")))
    world = int(_get(config, "trainer.nnodes", 1)) * int(_get(config, "trainer.n_gpus_per_node", 1))
    strategy = str(_get(config, "actor_rollout_ref.actor.strategy", "fsdp"))
    build = _megatron if strategy == "megatron" else _fsdp
    return build(config, shape, world, gpu_gib * GIB)


def report(config: DictConfig, gpu_gib: float = DEFAULT_GPU_GIB) -> tuple[list[str], list[str]]:
    """(lines to print, warnings) for ``verl-rlif check``; an unknown model gives one line and no warning."""
    if _get(config, "trainer.device", "cuda") == "cpu":
        return ["memory per GPU: not estimated (trainer.device=cpu)"], []
    try:
        result = estimate(config, gpu_gib)
    except NotEstimated as exc:
        return [f"memory per GPU: not estimated: {exc}"], []
    return result.lines(), result.warnings()
