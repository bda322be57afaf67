"""GPU: self-certainty on vs off in a verl-free replica of the old-log-prob pass (SmolLM2-135M shapes, bf16).

Run: python bench/bench_self_certainty_pass_gpu.py [--device cuda|cpu] [--tokens 8192] (skips without CUDA unless
--device is given)

For a GPU host without verl (the lent device cannot install verl's dependencies, Ray alone being 79 MB over the
carry limit), so the pass is rebuilt from its parts in plain torch: a randomly initialised Llama with SmolLM2's
shapes (timing does not depend on the weights), then what verl's FSDP engine does after the forward:
* unfused: logits / tau in fp32 and log p_y = z_y - logsumexp(z) (verl's ``logprobs_from_logits``);
  self-certainty adds path (i'), ``centred_logits`` + ``self_certainty_from_centred_logits``;
* fused: verl's ``FusedLinearForPPO`` forward in chunks of 512 tokens (logits chunk, logsumexp, log p_y,
  entropy), no full logits; self-certainty adds path (iii), ``centred_logits_from_hidden_states`` with w_bar
  cached (computed once per weight version, so outside the timed pass).
Baseline and on alternate; medians. Peak memory is ``torch.cuda.max_memory_allocated`` during one pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from verl_rlif.core.self_certainty import (
    centred_logits,
    centred_logits_from_hidden_states,
    lm_head_mean_row,
    self_certainty_from_centred_logits,
)

SMOLLM2 = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    vocab_size=49152,
    tie_word_embeddings=True,
    max_position_embeddings=16384,
)
TAU, REPEATS = 0.7, 9


def log_probs_unfused(logits, ids):
    z = logits.float() / TAU
    return z.gather(-1, ids[:, None]).squeeze(-1) - torch.logsumexp(z, -1)


def log_probs_fused(hidden, weight, ids, chunk=512):
    out = torch.empty(hidden.shape[0], device=hidden.device)
    for s in range(0, hidden.shape[0], chunk):
        z = (hidden[s : s + chunk] @ weight.T).float() / TAU
        lse = torch.logsumexp(z, -1)
        entropy = lse - (z.softmax(-1) * z).sum(-1)  # verl's kernel returns it too
        out[s : s + chunk] = z.gather(-1, ids[s : s + chunk, None]).squeeze(-1) - lse + 0 * entropy
    return out


@torch.no_grad()
def one_pass(model, ids, labels, fused: bool, self_certainty: bool, w_bar):
    hidden = model.model(input_ids=ids[None])[0][0]
    weight = model.lm_head.weight
    if fused:
        logp = log_probs_fused(hidden, weight, labels)
        if self_certainty:
            centred = centred_logits_from_hidden_states(hidden, weight, labels, w_bar, 1024)
            return self_certainty_from_centred_logits(centred, logp, weight.shape[0], TAU)
        return logp
    logits = model.lm_head(hidden)
    if self_certainty:
        centred = centred_logits(logits, labels, chunk_size_tokens=1024) / TAU  # read before verl's log-probs
    logp = log_probs_unfused(logits, labels)
    if self_certainty:
        return self_certainty_from_centred_logits(centred, logp, weight.shape[0])
    return logp


def timed(fn, device):
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    return time.perf_counter() - start


def peak_mib(fn, device):
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=SMOLLM2["num_hidden_layers"])
    args = parser.parse_args()
    if args.device is None:  # `make bench` on a machine without a GPU
        print("bench_self_certainty_pass_gpu: no CUDA device, skipped (--device cpu runs it on the CPU)")
        return
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config = LlamaConfig(**{**SMOLLM2, "num_hidden_layers": args.layers}, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    ids = torch.randint(1, config.vocab_size, (args.tokens,), device=device)
    labels = torch.roll(ids, -1)
    w_bar = lm_head_mean_row(model.lm_head.weight)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"Old-log-prob pass replica, SmolLM2-135M shapes, {args.tokens} tokens, {dtype}, {name}")
    for fused in (False, True):
        compare(lambda sc, fused=fused: one_pass(model, ids, labels, fused, sc, w_bar), fused, device)


def compare(run, fused: bool, device) -> None:
    """``run(self_certainty)`` off and on, alternating; prints medians and peak memory."""
    run(False), run(True)  # warm-up
    off, on = [], []
    for _ in range(REPEATS):
        off.append(timed(lambda: run(False), device))
        on.append(timed(lambda: run(True), device))
    t_off, t_on = statistics.median(off), statistics.median(on)
    m_off, m_on = peak_mib(lambda: run(False), device), peak_mib(lambda: run(True), device)
    label = "fused, path (iii)" if fused else "unfused, path (i')"
    print(
        f"  {label:20s} off {t_off * 1e3:8.2f} ms  on {t_on * 1e3:8.2f} ms  added {t_on / t_off - 1:+6.2%}  "
        f"peak off {m_off:8.1f} MiB  on {m_on:8.1f} MiB  added {m_on / m_off - 1:+6.2%}"
    )


if __name__ == "__main__":
    main()
