"""Megatron engine: self-certainty (path (i'), from verl's own vocab-parallel log-probs) through verl's real
``_lm_head_logits_processor`` on TP=2 vocab shards (2 gloo processes, megatron-core parallel state) equals the
single-process path (i) to 1e-5, padded vocabulary included, and verl's own outputs (log-probs) are unchanged.
"""

import ast
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


def test_fused_kernels_are_refused_with_the_switch_to_turn_off():
    from verl.utils import tensordict_utils as tu

    from verl_rlif.adapters.megatron_engine import RLIFMegatronEngineWithLMHead

    engine = RLIFMegatronEngineWithLMHead.__new__(RLIFMegatronEngineWithLMHead)
    engine.engine_config = SimpleNamespace(use_fused_kernels=True)
    batch = TensorDict({}, batch_size=[])
    tu.assign_non_tensor(batch, calculate_self_certainty=True)
    with pytest.raises(NotImplementedError, match="FSDP engine only.*use_fused_kernels=false"):
        engine.forward_step(iter([batch]), None, None, None)
