"""Vocabulary-parallel self-certainty (Megatron TP=2 over gloo, 2 CPU processes) equals the single-process value.

Each process takes its shard with megatron-core's own ``VocabUtility`` ranges, as Megatron's vocab-parallel
LM head lays them out, including a padded vocabulary whose padding falls on one rank or fills a rank.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from verl_rlif.core.self_certainty import self_certainty_from_logits, self_certainty_from_vocab_parallel_logits

WORLD = 2
# (true vocab, padded vocab): padding inside rank 1's shard; rank 1 all padding; no padding
CASES = [(11, 12), (5, 12), (12, 12)]


def _worker(rank: int, init_file: str, result_file: str) -> None:
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.utils import VocabUtility

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=WORLD)
    tp_group = parallel_state.get_tensor_model_parallel_group()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    worst = 0.0
    for true_vocab, padded in CASES:
        logits = torch.randn(3, 7, padded, generator=torch.Generator().manual_seed(padded + true_vocab)) * 3
        logits[..., true_vocab:] = 40.0  # padding that would dominate if it leaked in
        start, end = VocabUtility.vocab_range_from_global_vocab_size(padded, tp_rank, WORLD)
        shard = logits[..., start:end].clone()
        got = self_certainty_from_vocab_parallel_logits(
            shard, start, true_vocab, group=tp_group, temperature=0.7, chunk_size_tokens=4
        )
        assert torch.equal(shard, logits[..., start:end]), "the shard must not be modified"
        want = self_certainty_from_logits(logits, vocab_size=true_vocab, temperature=0.7)
        worst = max(worst, (got - want).abs().max().item())
    with open(f"{result_file}.{rank}", "w") as f:
        f.write(repr(worst))
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def test_vocab_parallel_matches_single_process(tmp_path):
    pytest.importorskip("megatron.core")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    result = tmp_path / "worst"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(result)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        assert float((tmp_path / f"worst.{rank}").read_text()) < 1e-4
