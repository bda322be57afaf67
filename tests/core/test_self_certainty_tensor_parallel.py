"""Vocabulary-parallel self-certainty (Megatron TP=2 over gloo, 2 CPU processes) equals the single-process value:
from logit shards (path (i)) and from hidden states and output-weight shards (path (iii):
``vocab_parallel_hidden_stats`` completed by log-probs over the padded width, as verl's fused kernel returns them).

Each process takes its shard with megatron-core's own ``VocabUtility`` ranges, as Megatron's vocab-parallel
LM head lays them out, including a padded vocabulary whose padding falls on one rank or fills a rank.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from verl_rlif.core.self_certainty import (
    self_certainty_from_logit_stats,
    self_certainty_from_logits,
    self_certainty_from_vocab_parallel_logits,
    vocab_parallel_hidden_stats,
    vocab_shard_row_sum,
)

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
        worst = max(worst, _hidden_state_error(true_vocab, padded, start, end, tp_group))
    with open(f"{result_file}.{rank}", "w") as f:
        f.write(repr(worst))
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def _hidden_state_error(true_vocab, padded, start, end, tp_group) -> float:
    """Path (iii) on this rank's rows of W against path (i) from the full logits h W^T."""
    g = torch.Generator().manual_seed(7 * padded + true_vocab)
    hidden, weight = torch.randn(3, 7, 8, generator=g), torch.randn(padded, 8, generator=g)
    # padding rows with visible softmax mass in the padded-width log-probs (up to 97 % of it when rank 1 is all
    # padding); padding that holds nearly all the mass costs fp32 digits in any padded-width correction, (i') too
    weight[true_vocab:] *= 0.5
    labels = torch.randint(0, true_vocab, (3, 7), generator=g)
    logits = hidden @ weight.T
    log_probs = torch.log_softmax(logits / 0.7, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # padded width
    want = self_certainty_from_logits(logits, vocab_size=true_vocab, temperature=0.7)
    shard = weight[start:end].clone()
    errors = []
    for row_sum in (None, vocab_shard_row_sum(shard, start, true_vocab)):  # recomputed, or cached per weights
        stats = vocab_parallel_hidden_stats(
            hidden, shard, labels, start, true_vocab, tp_group, temperature=0.7, row_sum=row_sum, chunk_size_tokens=4
        )
        got = self_certainty_from_logit_stats(stats, log_probs, true_vocab)
        errors.append((got - want).abs().max().item())
    assert torch.equal(shard, weight[start:end]), "the weight shard must not be modified"
    return max(errors)


def test_vocab_parallel_matches_single_process(tmp_path):
    pytest.importorskip("megatron.core")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    result = tmp_path / "worst"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(result)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        assert float((tmp_path / f"worst.{rank}").read_text()) < 1e-4
