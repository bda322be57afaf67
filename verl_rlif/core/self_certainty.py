"""Completion-level reward: token-wise self-certainty (Intuitor, arXiv 2505.19590).

For one position with logits z over the TRUE vocabulary of size V (columns at or beyond ``vocab_size``
are padding rows of the embedding and are excluded) and sampling temperature tau:

    SC = KL(Uniform_V || softmax(z / tau)) = logsumexp(z / tau) - mean(z / tau) - log V        (eq. 1)

and the sequence reward is the masked mean of SC over response tokens. Five entry points agree to 1e-4:

* :func:`self_certainty_from_logits` evaluates eq. 1 from full logits;
* :func:`self_certainty_from_logits_and_log_probs` uses logsumexp(z/tau) = z_y/tau - log p_y for the
  sampled token y, so only one mean over the vocabulary is left:
  SC = (z_y - mean z) / tau - log p_y - log V;
* :func:`self_certainty_from_vocab_parallel_logits` evaluates eq. 1 on vocabulary shards (Megatron tensor
  parallelism) with one all-gather of two numbers per token over the tensor-parallel group;
* :func:`self_certainty_from_hidden_states` uses z = h W^T, so z_y - mean z = h.(W_y - w_bar) with w_bar the
  mean of the true-vocabulary rows of W: SC = h.(W_y - w_bar) / tau - log p_y - log V. No pass over the
  vocabulary per token, for verl's fused-kernel path that never materialises logits;
* :func:`vocab_parallel_hidden_stats` is the same identity on vocabulary shards of W (Megatron tensor
  parallelism under fused kernels): z_y and h.w_bar from the shards, combined like the logit shards above.

All computation is fp32 and chunked over tokens: the extra peak memory is one ``[chunk, V]`` fp32 block.
Non-finite logits are rejected: on CPU with ``ValueError``; on an accelerator through an asynchronous
device assert, so the GPU path never waits for the host (it fails at the next synchronisation).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import SelfCertaintyConfig

DEFAULT_CHUNK_TOKENS = SelfCertaintyConfig.chunk_size_tokens
Temperature = float | torch.Tensor


def _true_vocab(vocab_size: int | None, padded: int) -> int:
    vocab = padded if vocab_size is None else int(vocab_size)
    if not 1 <= vocab <= padded:
        raise ValueError(f"vocab_size={vocab_size} must lie in [1, {padded}] (the logits' last dimension)")
    return vocab


def _token_temperature(temperature: Temperature, lead_shape: torch.Size) -> float | torch.Tensor:
    """A Python float as is (no device tensor, no copy), or a tensor broadcast to one value per token ``[T]``."""
    if isinstance(temperature, torch.Tensor):
        return temperature.float().expand(lead_shape).reshape(-1)
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    return float(temperature)


def _rows(temp: float | torch.Tensor, rows: slice) -> float | torch.Tensor:
    """The temperature of a chunk of rows, shaped to divide a ``[rows, V]`` block."""
    return temp if isinstance(temp, float) else temp[rows, None]


def _chunks(num_tokens: int, chunk_size_tokens: int):
    if chunk_size_tokens < 1:
        raise ValueError(f"chunk_size_tokens={chunk_size_tokens} must be >= 1")
    for start in range(0, num_tokens, chunk_size_tokens):
        yield slice(start, min(start + chunk_size_tokens, num_tokens))


def _require_finite(sc: torch.Tensor, source: str) -> torch.Tensor:
    """Reject NaN/inf self-certainty, which arises exactly when an input logit is NaN or infinite."""
    finite = torch.isfinite(sc).all()
    message = f"self-certainty: {source} contain NaN or inf; the policy has diverged or the inputs are corrupt"
    if sc.device.type == "cpu":
        if not finite:
            raise ValueError(message)
    else:
        torch._assert_async(finite, message)  # no host sync: fails at the next synchronisation point
    return sc


def self_certainty_from_logits(
    logits: torch.Tensor,
    vocab_size: int | None = None,
    temperature: Temperature = 1.0,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """Per-token self-certainty from full logits (eq. 1).

    Args:
        logits: ``[..., V_pad]`` any float dtype (not modified).
        vocab_size: true vocabulary size V <= V_pad; ``None`` means V_pad.
        temperature: scalar, or a tensor broadcastable to ``logits.shape[:-1]``.
        chunk_size_tokens: tokens per fp32 chunk.

    Returns:
        ``[...]`` fp32 self-certainty per position.
    """
    vocab = _true_vocab(vocab_size, logits.shape[-1])
    flat = logits.reshape(-1, logits.shape[-1])
    temp = _token_temperature(temperature, logits.shape[:-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for rows in _chunks(flat.shape[0], chunk_size_tokens):
        z = flat[rows, :vocab].float() / _rows(temp, rows)
        out[rows] = torch.logsumexp(z, dim=-1) - z.mean(dim=-1)
    out -= math.log(vocab)
    return _require_finite(out, "logits").view(logits.shape[:-1])


def centred_logits(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    vocab_size: int | None = None,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """``z_y - mean_V z`` per position: one mean over the true vocabulary, no logsumexp (unscaled logits).

    Args:
        logits: ``[..., V_pad]`` (not modified).
        token_ids: ``[...]`` int64 sampled tokens y (< V).
        vocab_size, chunk_size_tokens: as in :func:`self_certainty_from_logits`.

    Returns:
        ``[...]`` fp32.
    """
    vocab = _true_vocab(vocab_size, logits.shape[-1])
    flat = logits.reshape(-1, logits.shape[-1])
    ids = token_ids.reshape(-1, 1)
    centred = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for rows in _chunks(flat.shape[0], chunk_size_tokens):
        true_cols = flat[rows, :vocab]
        z_y = true_cols.gather(-1, ids[rows]).squeeze(-1).float()
        centred[rows] = z_y - true_cols.mean(dim=-1, dtype=torch.float32)
    return centred.view(logits.shape[:-1])


def self_certainty_from_centred_logits(
    centred: torch.Tensor, log_probs: torch.Tensor, vocab_size: int, temperature: Temperature = 1.0
) -> torch.Tensor:
    """SC = (z_y - mean_V z) / tau - log p_y - log V from the centred logit of the sampled token.

    Args:
        centred: ``[...]`` z_y - mean_V z (:func:`centred_logits`, or h.(W_y - w_bar) for hidden states).
        log_probs: ``[...]`` log p_y = log softmax(z / tau)_y over the same V columns.
        vocab_size: true vocabulary size V.
        temperature: scalar, or a tensor broadcastable to ``centred.shape``.

    Returns:
        ``[...]`` fp32.
    """
    temp = _token_temperature(temperature, centred.shape)
    out = centred.reshape(-1).float() / temp - log_probs.reshape(-1).float() - math.log(vocab_size)
    return _require_finite(out, "logits or log-probs").view(centred.shape)


def self_certainty_from_logits_and_log_probs(
    logits: torch.Tensor,
    token_ids: torch.Tensor,
    log_probs: torch.Tensor,
    vocab_size: int | None = None,
    temperature: Temperature = 1.0,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """Per-token self-certainty when log p_y is already known: one mean over the vocabulary, no logsumexp.

    SC = (z_y - mean_V z) / tau - log p_y - log V, with log p_y = log softmax(z / tau)_y.

    Args:
        logits: ``[..., V_pad]`` (not modified).
        token_ids: ``[...]`` int64 sampled tokens y (< V).
        log_probs: ``[...]`` log p_y from the same temperature-scaled logits.
        vocab_size, temperature, chunk_size_tokens: as in :func:`self_certainty_from_logits`.

    Returns:
        ``[...]`` fp32.
    """
    vocab = _true_vocab(vocab_size, logits.shape[-1])
    centred = centred_logits(logits, token_ids, vocab, chunk_size_tokens)
    return self_certainty_from_centred_logits(centred, log_probs, vocab, temperature)


def self_certainty_from_vocab_parallel_logits(
    logits_shard: torch.Tensor,
    vocab_start_index: int,
    vocab_size: int,
    group: dist.ProcessGroup | None = None,
    temperature: Temperature = 1.0,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """Per-token self-certainty from vocabulary-parallel logit shards (Megatron tensor parallelism).

    Rank r holds columns ``[vocab_start_index, vocab_start_index + V_local)`` of the padded vocabulary; the
    shards of the group tile it. Each rank reduces its true-vocabulary columns to (local logsumexp, local sum),
    one all-gather over ``group`` exchanges them, and every rank then holds the same result:
    logsumexp = logsumexp_r(lse_r), mean = sum_r(sum_r) / V.

    Args:
        logits_shard: ``[..., V_local]`` this rank's shard (not modified; Megatron's own vocab-parallel
            cross-entropy overwrites its input, this does not).
        vocab_start_index: first global column of this shard.
        vocab_size: true global vocabulary size V (columns >= V are padding, on any rank).
        group: tensor-parallel process group (``None``: the default group).
        temperature, chunk_size_tokens: as in :func:`self_certainty_from_logits`.

    Returns:
        ``[...]`` fp32, identical on every rank of the group.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size={vocab_size} must be >= 1")
    num_local = logits_shard.shape[-1]
    num_true_local = max(0, min(num_local, vocab_size - vocab_start_index))
    flat = logits_shard.reshape(-1, num_local)
    temp = _token_temperature(temperature, logits_shard.shape[:-1])
    local = torch.empty(2, flat.shape[0], dtype=torch.float32, device=logits_shard.device)
    local[0].fill_(-math.inf)  # a shard made only of padding contributes exp(-inf) = 0 and sum 0
    local[1].zero_()
    if num_true_local:
        for rows in _chunks(flat.shape[0], chunk_size_tokens):
            z = flat[rows, :num_true_local].float() / _rows(temp, rows)
            local[0, rows] = torch.logsumexp(z, dim=-1)
            local[1, rows] = z.sum(dim=-1)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    stacked = torch.stack(gathered)  # [ranks, 2, T]
    out = torch.logsumexp(stacked[:, 0], dim=0) - stacked[:, 1].sum(dim=0) / vocab_size - math.log(vocab_size)
    return _require_finite(out, "logit shards").view(logits_shard.shape[:-1])


def vocab_parallel_logit_stats(
    logits_shard: torch.Tensor,
    token_ids: torch.Tensor,
    vocab_start_index: int,
    vocab_size: int,
    group: dist.ProcessGroup | None = None,
    temperature: Temperature = 1.0,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """What path (i') needs from vocabulary-parallel logit shards, without a logsumexp over the vocabulary.

    Per position, with z the temperature-scaled logits over the padded width (the shards of the group tile it):
    ``[0]`` z_y, ``[1]`` mean of z over the true vocabulary, ``[2]`` logsumexp of z over the padding columns
    (>= ``vocab_size``; -inf when there are none). Each rank reduces its own columns; one all-gather of three
    numbers per token over ``group`` combines them. Feed the result to :func:`self_certainty_from_logit_stats`
    with the log-probs the engine computes over the padded width.

    Args:
        logits_shard: ``[..., V_local]`` this rank's columns ``[vocab_start_index, vocab_start_index + V_local)``
            (not modified).
        token_ids: ``[...]`` int64 sampled tokens y (< vocab_size).
        vocab_start_index, vocab_size, group, temperature, chunk_size_tokens: as in
            :func:`self_certainty_from_vocab_parallel_logits`.

    Returns:
        ``[3, ...]`` fp32, identical on every rank of the group.
    """
    num_local = logits_shard.shape[-1]
    num_true_local = max(0, min(num_local, vocab_size - vocab_start_index))
    flat = logits_shard.reshape(-1, num_local)
    ids = token_ids.reshape(-1) - vocab_start_index
    owned = (ids >= 0) & (ids < num_true_local)
    local_ids = torch.where(owned, ids, 0).unsqueeze(-1)
    temp = _token_temperature(temperature, logits_shard.shape[:-1])
    local = torch.zeros(3, flat.shape[0], dtype=torch.float32, device=logits_shard.device)
    local[2].fill_(-math.inf)
    for rows in _chunks(flat.shape[0], chunk_size_tokens):
        scale = _rows(temp, rows)
        if num_true_local:
            true_cols = flat[rows, :num_true_local]
            z_y = true_cols.gather(-1, local_ids[rows]).squeeze(-1).float()
            local[0, rows] = torch.where(owned[rows], z_y, 0.0)
            local[1, rows] = true_cols.sum(dim=-1, dtype=torch.float32)
        if num_true_local < num_local:  # padding columns: few, only on the last rank(s)
            local[2, rows] = torch.logsumexp(flat[rows, num_true_local:].float() / scale, dim=-1)
    local[:2] /= temp if isinstance(temp, float) else temp
    return _combine_shard_stats(local, vocab_size, group).view(3, *logits_shard.shape[:-1])


def _combine_shard_stats(local: torch.Tensor, vocab_size: int, group: dist.ProcessGroup | None) -> torch.Tensor:
    """``[3, T]`` per-rank (z_y or 0, sum over true columns, padding logsumexp) -> the group's ``[3, T]`` stats.

    One all-gather of three numbers per token: z_y and the sums add up (only the rank owning y contributes z_y),
    the padding columns' logsumexps combine by a logsumexp.
    """
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    stacked = torch.stack(gathered)  # [ranks, 3, T]
    return torch.stack([stacked[:, 0].sum(0), stacked[:, 1].sum(0) / vocab_size, torch.logsumexp(stacked[:, 2], dim=0)])


def self_certainty_from_logit_stats(stats: torch.Tensor, log_probs: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """SC from :func:`vocab_parallel_logit_stats` and log p_y over the padded width (what Megatron computes).

    logsumexp over the padded width is z_y - log p_y; removing the padding columns' mass gives the true one,
    LSE_V = LSE_pad + log(1 - exp(LSE_padcols - LSE_pad)), so SC = LSE_V - mean_V z - log V (eq. 1).

    Args:
        stats: ``[3, ...]`` (z_y, mean_V z, logsumexp of the padding columns), temperature-scaled.
        log_probs: ``[...]`` log p_y over the padded width.
        vocab_size: true vocabulary size V.

    Returns:
        ``[...]`` fp32.
    """
    z_y, mean, pad_lse = stats.float().unbind(0)
    lse_padded = z_y - log_probs.float()
    # the padding columns' share of the softmax mass; clamped so a degenerate model stays finite
    pad_share = torch.exp(pad_lse - lse_padded).clamp(max=1 - 1e-6)
    out = lse_padded + torch.log1p(-pad_share) - mean - math.log(vocab_size)
    return _require_finite(out, "logits or log-probs")


def lm_head_mean_row(weight: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """w_bar: ``[H]`` fp32 mean of the true-vocabulary rows of the LM-head weight ``[V_pad, H]``.

    One pass over W; compute it once per weight update and pass it to every micro-batch.
    """
    vocab = _true_vocab(vocab_size, weight.shape[0])
    return weight[:vocab].mean(dim=0, dtype=torch.float32)


def self_certainty_from_hidden_states(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    token_ids: torch.Tensor,
    log_probs: torch.Tensor,
    vocab_size: int | None = None,
    temperature: Temperature = 1.0,
    weight_mean: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """Per-token self-certainty from final hidden states, without logits.

    SC = (h.(W_y - w_bar) + b_y - mean_V b) / tau - log p_y - log V.

    Args:
        hidden: ``[..., H]`` final hidden states (after the final norm; the LM head's input).
        weight: ``[V_pad, H]`` LM-head weight (tied embeddings are fine).
        token_ids: ``[...]`` int64 sampled tokens y.
        log_probs: ``[...]`` log p_y from the temperature-scaled logits (the fused kernel returns them).
        vocab_size: true vocabulary size; ``None`` means V_pad.
        temperature: as in :func:`self_certainty_from_logits`.
        weight_mean: ``[H]`` precomputed :func:`lm_head_mean_row` (recomputed when ``None``).
        bias: optional ``[V_pad]`` LM-head bias.
        chunk_size_tokens: tokens per chunk of gathered rows ``W_y``.

    Returns:
        ``[...]`` fp32.
    """
    vocab = _true_vocab(vocab_size, weight.shape[0])
    w_bar = lm_head_mean_row(weight, vocab) if weight_mean is None else weight_mean
    centred = centred_logits_from_hidden_states(hidden, weight, token_ids, w_bar, chunk_size_tokens)
    if bias is not None:
        ids = token_ids.reshape(hidden.shape[:-1])
        centred = centred + bias[ids].float() - bias[:vocab].mean(dtype=torch.float32)
    return self_certainty_from_centred_logits(centred, log_probs, vocab, temperature)


def centred_logits_from_hidden_states(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    token_ids: torch.Tensor,
    weight_mean: torch.Tensor,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """``h.(W_y - w_bar)`` per position (= z_y - mean_V z for z = h W^T), without any ``[tokens, V]`` block.

    Args:
        hidden: ``[..., H]`` final hidden states.
        weight: ``[V_pad, H]`` LM-head weight.
        token_ids: ``[...]`` int64 sampled tokens y.
        weight_mean: ``[H]`` :func:`lm_head_mean_row` over the true vocabulary.
        chunk_size_tokens: tokens per chunk of gathered rows ``W_y`` (one ``[chunk, H]`` block at a time).

    Returns:
        ``[...]`` fp32.
    """
    w_bar = weight_mean.float()
    flat = hidden.reshape(-1, hidden.shape[-1])
    ids = token_ids.reshape(-1)
    centred = torch.empty(flat.shape[0], dtype=torch.float32, device=hidden.device)
    for rows in _chunks(flat.shape[0], chunk_size_tokens):
        h = flat[rows].float()
        # embedding() is the fastest row gather; W_y is one [chunk, H] block, never [T, H]
        centred[rows] = torch.linalg.vecdot(h, F.embedding(ids[rows], weight).float()) - h @ w_bar
    return centred.view(hidden.shape[:-1])


def vocab_shard_row_sum(weight_shard: torch.Tensor, vocab_start_index: int, vocab_size: int) -> torch.Tensor:
    """``[H]`` fp32 sum of this shard's true-vocabulary rows (global index < ``vocab_size``; zeros for padding only).

    Summed over the tensor-parallel group and divided by V it is w_bar; one pass over the shard, so compute it once
    per weight update and pass it to every micro-batch of :func:`vocab_parallel_hidden_stats`.

    Args:
        weight_shard: ``[V_local, H]`` rows ``[vocab_start_index, vocab_start_index + V_local)`` of the output layer.
        vocab_start_index, vocab_size: as in :func:`self_certainty_from_vocab_parallel_logits`.
    """
    num_true_local = max(0, min(weight_shard.shape[0], vocab_size - vocab_start_index))
    return weight_shard[:num_true_local].sum(dim=0, dtype=torch.float32)


def vocab_parallel_hidden_stats(
    hidden: torch.Tensor,
    weight_shard: torch.Tensor,
    token_ids: torch.Tensor,
    vocab_start_index: int,
    vocab_size: int,
    group: dist.ProcessGroup | None = None,
    temperature: Temperature = 1.0,
    row_sum: torch.Tensor | None = None,
    chunk_size_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> torch.Tensor:
    """Path (iii) on vocabulary shards: :func:`vocab_parallel_logit_stats` from hidden states, z = h W^T never built.

    With z = h W^T / tau over the padded width (rank r holds rows ``[vocab_start_index, +V_local)`` of W):
    ``[0]`` z_y = h.W_y / tau, from the rank owning y only; ``[1]`` mean_V z = h.(sum_r S_r) / (V tau) with S_r
    the shard's true-row sum (:func:`vocab_shard_row_sum`); ``[2]`` the logsumexp of z over the padding rows
    (>= ``vocab_size``; -inf when there are none), one ``[chunk, padding rows]`` block (Megatron pads fewer than
    128 x tp rows). One all-gather of three numbers per token over ``group``; feed the result to
    :func:`self_certainty_from_logit_stats` with log p_y over the padded width (what verl's fused kernel returns).

    Args:
        hidden: ``[..., H]`` final hidden states (after the final norm), the same on every rank of the group.
        weight_shard: ``[V_local, H]`` this rank's output-layer rows (not modified).
        token_ids: ``[...]`` int64 labels y (< vocab_size).
        vocab_start_index, vocab_size, group, temperature, chunk_size_tokens: as in
            :func:`vocab_parallel_logit_stats`.
        row_sum: ``[H]`` cached :func:`vocab_shard_row_sum` of ``weight_shard`` (recomputed when ``None``).

    Returns:
        ``[3, ...]`` fp32, identical on every rank of the group.
    """
    num_local = weight_shard.shape[0]
    num_true_local = max(0, min(num_local, vocab_size - vocab_start_index))
    flat = hidden.reshape(-1, hidden.shape[-1])
    ids = token_ids.reshape(-1) - vocab_start_index
    owned = (ids >= 0) & (ids < num_true_local)
    local_ids = torch.where(owned, ids, 0)
    row_sum = vocab_shard_row_sum(weight_shard, vocab_start_index, vocab_size) if row_sum is None else row_sum
    row_sum = row_sum.float()
    padding_rows = weight_shard[num_true_local:].float()  # [padding rows, H]: few, only on the last rank(s)
    temp = _token_temperature(temperature, hidden.shape[:-1])
    local = torch.zeros(3, flat.shape[0], dtype=torch.float32, device=hidden.device)
    local[2].fill_(-math.inf)
    for rows in _chunks(flat.shape[0], chunk_size_tokens):
        h = flat[rows].float()
        if num_true_local:
            # W_y is one [chunk, H] gather; ids this rank does not own read row 0 and are zeroed
            z_y = torch.linalg.vecdot(h, F.embedding(local_ids[rows], weight_shard).float())
            local[0, rows] = torch.where(owned[rows], z_y, 0.0)
            local[1, rows] = h @ row_sum
        if padding_rows.shape[0]:
            local[2, rows] = torch.logsumexp((h @ padding_rows.T) / _rows(temp, rows), dim=-1)
    local[:2] /= temp if isinstance(temp, float) else temp
    return _combine_shard_stats(local, vocab_size, group).view(3, *hidden.shape[:-1])


def sequence_self_certainty(token_sc: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Sequence reward: masked mean of per-token self-certainty over response tokens.

    r_sc(i) = sum_t m_it SC_it / sum_t m_it, and 0 for a row without response tokens.
    Values at masked positions are ignored even if they are NaN (verl pads with arbitrary values).

    Args:
        token_sc: ``[B, T]`` per-token self-certainty.
        response_mask: ``[B, T]`` bool or 0/1.

    Returns:
        ``[B]`` fp32.
    """
    return masked_row_mean(token_sc, response_mask)


def masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` values, ``[B, T]`` bool or 0/1 mask -> ``[B]`` fp32 mean over each row's masked positions.

    0 for a row without masked positions; values outside the mask are ignored even if they are NaN.
    """
    mask = mask.bool()
    total = torch.where(mask, values.float(), 0.0).sum(dim=-1)
    return total / mask.sum(dim=-1).clamp(min=1)
