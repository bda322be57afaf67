"""Megatron engine, 2 gloo processes (TP=2, or CP=2 for the fused path), padded vocabulary included.

* Unfused, path (i'): through verl's real ``_lm_head_logits_processor`` on vocab shards, equal to the
  single-process path (i) to 1e-5, verl's own outputs (log-probs) unchanged.
* Fused, path (iii): through our engine's ``forward_step`` -> verl's real ``forward_step`` -> verl's real fused
  forward (``fused_forward_model_engine_inner``: THD packing, rolled labels, ``postprocess_thd_engine``) -> verl's
  patched ``GPTModel.forward`` on a real megatron-core ``GPTModel`` (vocab-parallel embedding and output layer,
  final layernorm, an MLP-only layer: Megatron's local attention has no packed-sequence support without Transformer
  Engine) -> verl's ``postprocess_micro_batch_func``; equal to path (i) from the full logits of megatron-core's own
  unfused forward of the same model, computed on one process, to 1e-4, with TP=2 and with CP=2 (verl's zigzag
  split of the packed rows and its CP gather; the MLP-only layer needs no attention exchange). Two stand-ins, both
  in the spawned workers
  only: verl's Triton ``linear_cross_entropy`` (CUDA only) is replaced by the same function written with verl's
  vocab-parallel helpers (log p_y and entropy of h W^T / tau over the padded width, over the TP group), and
  ``get_device_id`` (CUDA only) returns ``"cpu"``.
"""

import ast
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tensordict import TensorDict

pytest.importorskip("megatron.core")

TP = 2
# (true vocab = HF config.vocab_size, width of the model's output layer; the excess is Megatron padding)
CASES = [(12, 12), (11, 12), (5, 12)]


def _processor_inputs(true_vocab, width):
    g = torch.Generator().manual_seed(width * 100 + true_vocab)
    logits = torch.randn(1, 7, width, generator=g) * 3  # thd layout: [1, tokens, vocab]
    logits[..., true_vocab:] = -5.0
    label = torch.randint(0, true_vocab, (1, 7), generator=g)
    temperature = torch.full((1, 7), 0.7)
    temperature[0, -1] = 0.0  # verl's padding slot
    return logits, label, temperature


def _worker(rank, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=TP)
    from megatron.core import parallel_state as mpu

    mpu.initialize_model_parallel(tensor_model_parallel_size=TP)
    from verl.utils import tensordict_utils as tu

    from verl_rlif.adapters.megatron_engine import RLIFMegatronEngineWithLMHead
    from verl_rlif.core.self_certainty import self_certainty_from_logits

    worst = tight = 0.0
    for true_vocab, width in CASES:
        logits, label, temperature = _processor_inputs(true_vocab, width)
        engine = RLIFMegatronEngineWithLMHead.__new__(RLIFMegatronEngineWithLMHead)
        engine.engine_config = SimpleNamespace(entropy_from_logits_with_chunking=False, use_fused_kernels=False)
        engine.model_config = SimpleNamespace(hf_config=SimpleNamespace(vocab_size=true_vocab))
        batch = TensorDict({}, batch_size=[])
        tu.assign_non_tensor(batch, calculate_self_certainty=True, self_certainty_chunk_size_tokens=3)
        local = width // TP
        shard = logits[..., rank * local : (rank + 1) * local].clone()
        out = engine._lm_head_logits_processor(
            shard,
            label.clone(),
            temperature.clone(),
            calculate_sum_pi_squared=False,
            calculate_entropy=False,
            distillation_use_topk=False,
            distillation_only=False,
            logits_processor_func=None,
            batch=batch,
            data_format="thd",
        )
        t = temperature.clamp(min=1e-8)
        want = self_certainty_from_logits(logits, vocab_size=true_vocab, temperature=t)
        want_logp = torch.log_softmax(logits / t.unsqueeze(-1), -1).gather(-1, label.unsqueeze(-1)).squeeze(-1)
        worst = max(worst, (out["self_certainty"] - want).abs().max().item())
        tight = max(tight, (out["self_certainty"] - want).abs().max().item())
        if true_vocab == width:  # verl's log-probs use the full width; compare where it equals the true vocab
            worst = max(worst, (out["log_probs"] - want_logp).abs().max().item())
    with open(f"{result_file}.{rank}", "w") as f:
        f.write(repr((worst, tight)))
    mpu.destroy_model_parallel()
    dist.destroy_process_group()


def test_tensor_parallel_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path / "err")), nprocs=TP, join=True)
    for rank in range(TP):
        worst, tight = ast.literal_eval((tmp_path / f"err.{rank}").read_text())
        assert worst < 1e-4 and tight < 1e-5  # path (i') in the engine equals path (i) to 1e-5


# (true vocab = HF config.vocab_size, output width, tied embeddings): widths divisible by TP; the excess is padding
FUSED_CASES = [(16, 16, False), (13, 16, False), (7, 16, True)]
HIDDEN = 16
TEMPERATURE = 0.7
SEQS = [7, 3, 5]  # packed lengths (odd: THD pads each sequence to a multiple of TP)


def _cpu_linear_cross_entropy(hidden, weight, labels, temperature, reduction, group):
    """verl's fused kernel on the CPU: log p_y and entropy of h W^T / tau over the padded width and the TP group."""
    from verl.utils.megatron.tensor_parallel import vocab_parallel_entropy, vocab_parallel_log_probs_from_logits

    assert reduction == "none"
    logits = (hidden.reshape(-1, hidden.shape[-1]).float() @ weight.float().T / temperature).unsqueeze(0)
    # Megatron's vocab-parallel cross-entropy overwrites its input: pass copies
    log_probs = vocab_parallel_log_probs_from_logits(logits.clone(), labels.reshape(1, -1)).reshape(-1)
    return log_probs, vocab_parallel_entropy(logits.clone()).reshape(-1)


def _gpt_model(padded_vocab, tied, cp=1):
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.identity_op import IdentityFuncOp, IdentityOp

    spec = get_gpt_layer_local_spec()
    spec.submodules.input_layernorm = spec.submodules.self_attention = IdentityOp
    spec.submodules.self_attn_bda = IdentityFuncOp
    config = TransformerConfig(
        num_layers=1,
        hidden_size=HIDDEN,
        num_attention_heads=2,
        use_cpu_initialization=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=torch.float32,
        context_parallel_size=cp,
    )
    torch.manual_seed(padded_vocab + tied)  # the same master weights on both ranks; each keeps its own shard
    model = GPTModel(
        config,
        spec,
        vocab_size=padded_vocab,
        max_sequence_length=64,
        position_embedding_type="none",
        share_embeddings_and_output_weights=tied,
    )
    with torch.no_grad():  # larger logits than the default init, so the padding rows' softmax mass is visible
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.mul_(4.0)
    return model.eval()


def _fused_engine(true_vocab):
    from verl_rlif.adapters.megatron_engine import RLIFMegatronEngineWithLMHead

    engine = RLIFMegatronEngineWithLMHead.__new__(RLIFMegatronEngineWithLMHead)
    engine.engine_config = SimpleNamespace(
        use_fused_kernels=True,
        use_remove_padding=True,
        pad_to_length=False,
        dynamic_context_parallel=False,
    )
    engine.model_config = SimpleNamespace(
        hf_config=SimpleNamespace(vocab_size=true_vocab, architectures=["Qwen2ForCausalLM"]),
        tokenizer=SimpleNamespace(pad_token_id=0),
    )
    engine.enable_routing_replay = False
    engine.tf_config = None
    return engine


def _fused_micro_batch(seqs, self_certainty=True):
    from verl.utils import tensordict_utils as tu

    def nested(xs):
        return torch.nested.as_nested_tensor(xs, layout=torch.jagged)

    batch = TensorDict(
        {
            "input_ids": nested(seqs),
            "loss_mask": nested([torch.ones_like(s) for s in seqs]),
            "temperature": torch.full((len(seqs),), TEMPERATURE),
        },
        batch_size=[len(seqs)],
    )
    tu.assign_non_tensor(
        batch,
        use_fused_kernels=True,
        calculate_entropy=False,
        calculate_self_certainty=self_certainty,
        self_certainty_chunk_size_tokens=4,
    )
    return batch


def _fused_pass(engine, model, batch):
    """One micro-batch of verl's forward-only Megatron loop: ``forward_step`` then its post-processing."""
    output, postprocess = engine.forward_step(
        iter([batch]),
        model,
        None,
        partial(engine.postprocess_micro_batch_func, forward_only=True, loss_function=None),
    )
    return postprocess(output)[1]["model_output"]


def _fused_worker(rank, tp, cp, cases, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=tp * cp)
    from megatron.core import parallel_state as mpu

    mpu.initialize_model_parallel(tensor_model_parallel_size=tp, context_parallel_size=cp)
    tp_group, tp_rank = mpu.get_tensor_model_parallel_group(), mpu.get_tensor_model_parallel_rank()
    import verl.models.mcore.model_forward_fused as fused_forward
    import verl.workers.engine.megatron.transformer_impl as megatron_impl
    from verl.models.mcore.model_forward_fused import patch_fused_forward

    from verl_rlif.adapters import megatron_engine
    from verl_rlif.core.self_certainty import self_certainty_from_logits

    fused_forward.linear_cross_entropy = _cpu_linear_cross_entropy  # stand-ins: CUDA-only in verl
    megatron_impl.get_device_id = lambda: "cpu"
    row_sums = []  # calls of the cached per-shard row sum (w_bar)
    real_row_sum = megatron_engine.vocab_shard_row_sum
    megatron_engine.vocab_shard_row_sum = lambda *a: row_sums.append(1) or real_row_sum(*a)
    megatron_engine.MegatronEngineWithLMHead.optimizer_step = lambda self: 0.0  # no optimizer here

    results = {"sc": 0.0, "log_probs": 0.0, "sequence_parallel": 0.0}
    for true_vocab, width, tied in cases:
        model = _gpt_model(width, tied, cp)
        g = torch.Generator().manual_seed(width + true_vocab)
        seqs = [torch.randint(1, true_vocab, (n,), generator=g) for n in SEQS]
        with torch.no_grad():  # reference: megatron-core's own unfused forward, full logits on one process
            shard = model(input_ids=torch.cat(seqs).unsqueeze(0), position_ids=None, attention_mask=None)[0]
            shards = [torch.empty_like(shard) for _ in range(tp)]
            dist.all_gather(shards, shard.contiguous(), group=tp_group)
        logits = torch.cat(shards, dim=-1)  # [tokens, width]
        want = self_certainty_from_logits(logits, vocab_size=true_vocab, temperature=TEMPERATURE)
        labels = torch.cat([torch.roll(s, -1) for s in seqs])
        want_logp = torch.log_softmax(logits / TEMPERATURE, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        inner = torch.ones(len(labels), dtype=torch.bool)  # the last token of a sequence has no next-token label
        inner[torch.tensor(SEQS).cumsum(0) - 1] = False

        patch_fused_forward(model)  # verl's own legacy patch (megatron-core 0.16)
        engine = _fused_engine(true_vocab)
        out = _fused_pass(engine, model, _fused_micro_batch(seqs))
        got = out["self_certainty"]
        assert got.is_nested and got.offsets().tolist() == out["log_probs"].offsets().tolist()
        results["sc"] = max(results["sc"], (got.values() - want).abs().max().item())
        lp_err = (out["log_probs"].values() - want_logp)[inner].abs().max().item()
        results["log_probs"] = max(results["log_probs"], lp_err)
        results["hook_removed"] = not model._forward_hooks  # the hook lives for one micro-batch only
        unflagged = _fused_pass(engine, model, _fused_micro_batch(seqs, self_certainty=False))
        results["unflagged"] = "self_certainty" not in unflagged and "log_probs" in unflagged
        row_sums.clear()
        _fused_pass(engine, model, _fused_micro_batch(seqs))  # w_bar cached: no recomputation ...
        engine.optimizer_step()  # ... until the weights change
        _fused_pass(engine, model, _fused_micro_batch(seqs))
        results["row_sum_calls"] = len(row_sums)

        # sequence parallelism: the hook gathers this rank's slice of h as verl does before its kernel
        captured, full = {}, {}
        hidden = torch.randn(8, 1, HIDDEN, generator=g)
        kwargs = {"labels": torch.randint(0, true_vocab, (1, 8), generator=g), "temperature": TEMPERATURE}
        kwargs["packed_seq_params"] = None
        log_probs = torch.randn(8, generator=g) - 3
        engine._capture_fused(full, 4, model, (), kwargs, SimpleNamespace(hidden_states=hidden, log_probs=log_probs))
        model.config.sequence_parallel = True
        local = SimpleNamespace(hidden_states=hidden.chunk(tp)[tp_rank], log_probs=log_probs)
        engine._capture_fused(captured, 4, model, (), kwargs, local)
        model.config.sequence_parallel = False
        err = (captured["values"] - full["values"]).abs().max().item()
        results["sequence_parallel"] = max(results["sequence_parallel"], err)
    with open(f"{result_file}.{rank}", "w") as f:
        f.write(repr(results))
    mpu.destroy_model_parallel()
    dist.destroy_process_group()


@pytest.mark.parametrize(
    "tp, cp, cases",
    [(TP, 1, FUSED_CASES), (1, 2, FUSED_CASES[1:2])],  # context parallel: verl's zigzag split, its CP gather
    ids=["tp2", "cp2"],
)
def test_fused_kernels_hidden_state_path_equals_logits(tmp_path, tp, cp, cases):
    args = (tp, cp, cases, str(tmp_path / "init"), str(tmp_path / "err"))
    mp.spawn(_fused_worker, args=args, nprocs=tp * cp, join=True)
    for rank in range(tp * cp):
        results = ast.literal_eval((tmp_path / f"err.{rank}").read_text())
        assert results["sc"] < 1e-4, results  # path (iii) on TP shards through verl's fused forward = path (i)
        assert results["log_probs"] < 1e-4, results  # the stand-in kernel is verl's definition
        assert results["sequence_parallel"] < 1e-6, results
        assert results["hook_removed"] and results["unflagged"], results
        assert results["row_sum_calls"] == 1, results  # once after the weight update, not per micro-batch


def _refusing_engine(dynamic_context_parallel=False):
    from verl_rlif.adapters.megatron_engine import RLIFMegatronEngineWithLMHead

    engine = RLIFMegatronEngineWithLMHead.__new__(RLIFMegatronEngineWithLMHead)
    engine.engine_config = SimpleNamespace(use_fused_kernels=True, dynamic_context_parallel=dynamic_context_parallel)
    return engine


def test_fused_kernels_with_dynamic_context_parallel_are_refused_naming_the_switch():
    switch = "dynamic_context_parallel=false, or actor_rollout_ref.model.use_fused_kernels=false"
    with pytest.raises(NotImplementedError, match=switch):
        _refusing_engine(dynamic_context_parallel=True).forward_step(iter([_fused_micro_batch(SEQS_IDS)]), None, 0, 0)


def test_fused_kernels_with_a_model_other_than_gpt_are_refused_naming_the_switch():
    with pytest.raises(NotImplementedError, match="use_fused_kernels=false \\(got Linear\\)"):
        _refusing_engine().forward_step(iter([_fused_micro_batch(SEQS_IDS)]), torch.nn.Linear(2, 2), 0, 0)


SEQS_IDS = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]


def _cuda_kernel_worker(rank, init_file, result_file):
    from verl.utils.kernel.linear_cross_entropy import linear_cross_entropy

    from verl_rlif.core.self_certainty import (
        self_certainty_from_logit_stats,
        self_certainty_from_logits,
        vocab_parallel_hidden_stats,
    )

    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=1)
    g = torch.Generator(device="cuda").manual_seed(0)
    true_vocab, width, tokens = 1000, 1024, 512  # Megatron-style padding rows; the kernel wants H % 128 == 0
    hidden = torch.randn(tokens, 128, device="cuda", generator=g).bfloat16()
    weight = torch.randn(width, 128, device="cuda", generator=g) * 0.3
    weight[true_vocab:] *= 0.6  # padding rows hold up to ~4 % of the softmax mass: visible, and well conditioned
    weight = weight.bfloat16()
    labels = torch.randint(0, true_vocab, (tokens,), device="cuda", generator=g)
    log_probs, _ = linear_cross_entropy(hidden, weight, labels, TEMPERATURE, "none", None)  # padded width
    stats = vocab_parallel_hidden_stats(hidden, weight, labels, 0, true_vocab, temperature=TEMPERATURE)
    got = self_certainty_from_logit_stats(stats, log_probs, true_vocab)
    want = self_certainty_from_logits(hidden.float() @ weight.float().T, true_vocab, TEMPERATURE)
    with open(result_file, "w") as f:
        f.write(repr((got - want).abs().max().item()))
    dist.destroy_process_group()


@pytest.mark.gpu
def test_verls_triton_kernel_completes_the_hidden_state_path_on_cuda(tmp_path):
    """verl's real fused Megatron kernel (Triton ``linear_cross_entropy``, one rank) returns the padded-width
    log-probs path (iii) completes: equal to path (i) from the full logits on CUDA (not run here: no GPU)."""
    result = tmp_path / "err"
    mp.spawn(_cuda_kernel_worker, args=(str(tmp_path / "init"), str(result)), nprocs=1, join=True)
    assert float(result.read_text()) < 1e-4
