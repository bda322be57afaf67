"""GPU only: the core's device paths make no host synchronisation and agree with the CPU results.

``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising CUDA call (``.item()``, ``nonzero``,
boolean indexing, device-to-host copies) into an exception.
"""

import pytest
import torch

from verl_rlif.config import KLCovConfig
from verl_rlif.core import (
    kl_cov_token_losses,
    lm_head_mean_row,
    self_certainty_from_hidden_states,
    self_certainty_from_logits,
    self_certainty_from_logits_and_log_probs,
)
from verl_rlif.core.self_certainty import (
    centred_logits,
    centred_logits_from_hidden_states,
    self_certainty_from_centred_logits,
    self_certainty_from_logit_stats,
)

pytestmark = pytest.mark.gpu


def _inputs():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 64, 32, generator=g)
    weight = torch.randn(1000, 32, generator=g) * 0.3
    logits = hidden @ weight.T
    logp_all = torch.log_softmax(logits[..., :990] / 0.9, dim=-1)
    ids = logp_all.argmax(-1)
    return hidden, weight, logits, ids, logp_all.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def test_self_certainty_paths_are_sync_free():
    hidden, weight, logits, ids, logp = _inputs()
    cpu = self_certainty_from_logits(logits, 990, 0.9)
    dev = [t.cuda() for t in (hidden, weight, logits, ids, logp)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        h, w, z, y, lp = dev
        outs = [
            self_certainty_from_logits(z, 990, 0.9, chunk_size_tokens=37),
            self_certainty_from_logits_and_log_probs(z, y, lp, 990, 0.9),
            self_certainty_from_hidden_states(h, w, y, lp, 990, 0.9, weight_mean=lm_head_mean_row(w, 990)),
        ]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for out in outs:
        torch.testing.assert_close(out.cpu(), cpu, atol=1e-4, rtol=0)


def test_engine_building_blocks_are_sync_free():
    """What the engines run per micro-batch: (i') and (iii) in two steps, and (i') from TP statistics."""
    hidden, weight, logits, ids, logp = _inputs()
    cpu = self_certainty_from_logits(logits, 990, 0.9)
    lse = torch.logsumexp(logits / 0.9, -1)
    pad_lp = logits[..., :990].gather(-1, ids.unsqueeze(-1)).squeeze(-1) / 0.9 - lse  # log p_y over all 1000 cols
    stats = torch.stack(
        [
            logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) / 0.9,
            logits[..., :990].mean(-1) / 0.9,
            torch.logsumexp(logits[..., 990:] / 0.9, -1),
        ]
    )
    h, w, z, y, lp, st, plp = (t.cuda() for t in (hidden, weight, logits, ids, logp, stats, pad_lp))
    w_bar = w[:990].mean(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [
            self_certainty_from_centred_logits(centred_logits(z, y, 990, 37) / 0.9, lp, 990),
            self_certainty_from_centred_logits(centred_logits_from_hidden_states(h, w, y, w_bar, 37), lp, 990, 0.9),
            self_certainty_from_logit_stats(st, plp, 990),
        ]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for out in outs:
        torch.testing.assert_close(out.cpu(), cpu, atol=1e-4, rtol=0)


def test_kl_cov_is_sync_free():
    g = torch.Generator().manual_seed(1)
    old, adv = -torch.rand(8, 256, generator=g), torch.randn(8, 256, generator=g)
    mask = torch.rand(8, 256, generator=g) < 0.8
    logp = (old + 0.1 * torch.randn(8, 256, generator=g)).cuda().requires_grad_()
    old, adv, mask = old.cuda(), adv.cuda(), mask.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, metrics = kl_cov_token_losses(old, logp, adv, mask, KLCovConfig(top_token_fraction=0.01))
        (loss.sum() / mask.sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert 0 < metrics["selected_fraction"].item() <= 0.011
