"""Self-certainty: hand-worked values, the three entry points against each other and against float64 KL."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_rlif.core.self_certainty import (
    lm_head_mean_row,
    self_certainty_from_hidden_states,
    self_certainty_from_logits,
    self_certainty_from_logits_and_log_probs,
    sequence_self_certainty,
)


def kl_uniform_float64(logits, vocab, temperature=1.0):
    """Brute force KL(U || softmax(z / tau)) = sum_v (1/V) (log(1/V) - log p_v), in float64."""
    logp = torch.log_softmax(logits[..., :vocab].double() / temperature, dim=-1)
    return (-math.log(vocab) - logp).mean(dim=-1)


def sampled_log_probs(logits, vocab, temperature, generator):
    logp = torch.log_softmax(logits[..., :vocab].float() / temperature, dim=-1)
    ids = torch.multinomial(logp.exp().reshape(-1, vocab), 1, generator=generator).view(logits.shape[:-1])
    return ids, logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def test_uniform_logits_have_zero_self_certainty():
    assert self_certainty_from_logits(torch.full((3, 7), 2.5)).abs().max() < 1e-6


def test_two_token_example_by_hand():
    # z = [0, ln 3] -> p = [1/4, 3/4]; KL(U||p) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln(4/3)
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert self_certainty_from_logits(z).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    # tau = 1/2 -> z/tau = [0, 2 ln 3] -> p = [1/10, 9/10]; KL = 1/2 ln 5 + 1/2 ln(5/9) = ln(5/3)
    assert self_certainty_from_logits(z, temperature=0.5).item() == pytest.approx(math.log(5 / 3), abs=1e-6)


def test_padding_columns_are_excluded():
    z = torch.tensor([[0.0, math.log(3.0), 50.0, -50.0]])  # two padding columns with extreme values
    assert self_certainty_from_logits(z, vocab_size=2).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


def test_matches_float64_kl_with_chunking_and_bf16():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 33, 50, generator=g) * 4
    expected = kl_uniform_float64(logits, 45, 0.7)
    for chunk in (1, 7, 10_000):
        got = self_certainty_from_logits(logits, vocab_size=45, temperature=0.7, chunk_size_tokens=chunk)
        assert got.shape == (2, 33) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)
    bf16 = logits.bfloat16()
    torch.testing.assert_close(
        self_certainty_from_logits(bf16, 45, 0.7).double(), kl_uniform_float64(bf16.float(), 45, 0.7), atol=1e-4, rtol=0
    )


def test_per_token_temperature_tensor():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 20, generator=g)
    temps = torch.tensor([0.5, 1.0, 2.0]).unsqueeze(-1)  # one temperature per sequence, broadcast over positions
    got = self_certainty_from_logits(logits, temperature=temps)
    for b in range(3):
        torch.testing.assert_close(
            got[b].double(), kl_uniform_float64(logits[b], 20, temps[b].item()), atol=1e-5, rtol=0
        )


def test_inputs_are_not_modified():
    logits = torch.randn(4, 9)
    before = logits.clone()
    self_certainty_from_logits(logits, temperature=0.3)
    assert torch.equal(logits, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_prob_identity_equals_full_logits(dtype):
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(4, 16, 64, generator=g) * 3).to(dtype)
    ids, logp = sampled_log_probs(logits, 60, 0.8, g)
    full = self_certainty_from_logits(logits, vocab_size=60, temperature=0.8)
    fast = self_certainty_from_logits_and_log_probs(
        logits, ids, logp, vocab_size=60, temperature=0.8, chunk_size_tokens=5
    )
    torch.testing.assert_close(fast, full, atol=1e-4, rtol=0)


def test_hidden_state_identity_equals_full_logits():
    # A tiny random LM head with padded vocabulary rows and a bias.
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 12, 16, generator=g)
    weight = torch.randn(40, 16, generator=g) * 0.5
    bias = torch.randn(40, generator=g)
    vocab, tau = 37, 0.6
    logits = hidden @ weight.T + bias
    ids, logp = sampled_log_probs(logits, vocab, tau, g)
    full = self_certainty_from_logits(logits, vocab_size=vocab, temperature=tau)
    got = self_certainty_from_hidden_states(hidden, weight, ids, logp, vocab, tau, bias=bias, chunk_size_tokens=5)
    torch.testing.assert_close(got, full, atol=1e-4, rtol=0)
    # a precomputed mean row gives the same result
    w_bar = lm_head_mean_row(weight, vocab)
    again = self_certainty_from_hidden_states(hidden, weight, ids, logp, vocab, tau, weight_mean=w_bar, bias=bias)
    torch.testing.assert_close(again, got, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_are_rejected(bad):
    logits = torch.randn(3, 8)
    logits[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        self_certainty_from_logits(logits)
    ids = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="NaN or inf"):
        self_certainty_from_logits_and_log_probs(logits, ids, torch.zeros(3))


def test_non_finite_hidden_states_are_rejected():
    hidden = torch.randn(3, 4)
    hidden[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        self_certainty_from_hidden_states(hidden, torch.randn(5, 4), torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_bad_arguments_name_the_valid_range():
    with pytest.raises(ValueError, match=r"vocab_size=9 must lie in \[1, 8\]"):
        self_certainty_from_logits(torch.randn(2, 8), vocab_size=9)
    with pytest.raises(ValueError, match="temperature=0"):
        self_certainty_from_logits(torch.randn(2, 8), temperature=0)
    with pytest.raises(ValueError, match="chunk_size_tokens"):
        self_certainty_from_logits(torch.randn(2, 8), chunk_size_tokens=0)


def test_sequence_reward_is_masked_mean():
    sc = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [5.0, 5.0, 5.0, 5.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    # row 0: (1+2+3)/3, NaN at the padded position ignored; row 2 has no response tokens -> 0
    assert sequence_self_certainty(sc, mask).tolist() == [2.0, 5.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 30),
    st.floats(0.1, 3.0),
    st.floats(0.01, 30.0),
    st.integers(0, 2**31 - 1),
)
def test_nonnegative_and_finite_for_any_finite_logits(tokens, vocab, tau, scale, seed):
    # KL is >= 0; extreme but finite logits must stay finite.
    logits = torch.randn(tokens, vocab + 2, generator=torch.Generator().manual_seed(seed)) * scale
    sc = self_certainty_from_logits(logits, vocab_size=vocab, temperature=tau)
    assert torch.isfinite(sc).all()
    assert (sc > -1e-5).all()
    torch.testing.assert_close(sc.double(), kl_uniform_float64(logits, vocab, tau), atol=1e-4, rtol=1e-5)
