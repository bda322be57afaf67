"""Self-certainty entry points vs verl's log-prob + entropy from logits, 4,096 tokens x 32,000 vocabulary (fp32).

Run: .venv/bin/python bench/bench_self_certainty.py [--device cuda]
Baseline: what verl's engine already does per old-log-prob pass, ``logprobs_from_logits`` plus
``entropy_from_logits`` on the same logits. Self-certainty rides on the same pass, so its cost is reported
as a fraction of that baseline. The hidden-state path (for fused kernels that never build logits) takes
H = 4,096 (a 7B-class model); w_bar is computed once per weight update, and its cost is shown separately.
"""

import torch
from timing import device_from_args, machine, median_seconds
from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

from verl_rlif.core.self_certainty import (
    lm_head_mean_row,
    self_certainty_from_hidden_states,
    self_certainty_from_logits,
    self_certainty_from_logits_and_log_probs,
)

TOKENS, VOCAB, HIDDEN, REPEATS = 4096, 32000, 4096, 5


def main() -> None:
    device = device_from_args(__doc__)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(TOKENS, HIDDEN, generator=g).to(device)
    weight = (torch.randn(VOCAB, HIDDEN, generator=g) * HIDDEN**-0.5).to(device)
    logits = hidden @ weight.T
    ids = torch.randint(0, VOCAB, (TOKENS,), generator=g).to(device)
    logp = logprobs_from_logits(logits, ids)
    w_bar = lm_head_mean_row(weight)

    t_verl = median_seconds(lambda: (logprobs_from_logits(logits, ids), entropy_from_logits(logits)), REPEATS)
    t_full = median_seconds(lambda: self_certainty_from_logits(logits), REPEATS)
    t_given = median_seconds(lambda: self_certainty_from_logits_and_log_probs(logits, ids, logp), REPEATS)
    t_hidden = median_seconds(
        lambda: self_certainty_from_hidden_states(hidden, weight, ids, logp, weight_mean=w_bar), REPEATS
    )
    t_w_bar = median_seconds(lambda: lm_head_mean_row(weight), REPEATS)

    full = self_certainty_from_logits(logits)
    agree_given = (self_certainty_from_logits_and_log_probs(logits, ids, logp) - full).abs().max().item()
    agree_hidden = (self_certainty_from_hidden_states(hidden, weight, ids, logp) - full).abs().max().item()

    print(f"Self-certainty, {TOKENS} tokens x {VOCAB} vocab, fp32, H={HIDDEN} ({machine()})")
    print(f"  verl log-prob + entropy (baseline)     {t_verl * 1e3:8.1f} ms")
    print(f"  (i)  from logits                       {t_full * 1e3:8.1f} ms   {t_full / t_verl:6.1%} of baseline")
    print(f"  (i') from logits, log-probs known      {t_given * 1e3:8.1f} ms   {t_given / t_verl:6.1%} of baseline")
    print(
        f"  (iii) from hidden states, w_bar given  {t_hidden * 1e3:8.1f} ms   {t_full / t_hidden:6.1f}x faster than (i)"
    )
    print(f"       w_bar, once per weight update     {t_w_bar * 1e3:8.1f} ms")
    print(f"  max |(i') - (i)| {agree_given:.1e}, max |(iii) - (i)| {agree_hidden:.1e}")


if __name__ == "__main__":
    main()
