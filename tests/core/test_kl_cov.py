"""KL-Cov: a hand-worked micro-batch, the stochastic rounding of k, gradients, and parity with verl's ``kl_cov``."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from verl_reference import random_response_mask, verl_actor_config, verl_kl_cov

from verl_rlif.config import KLCovConfig
from verl_rlif.core.kl_cov import data_uniform, kl_cov_token_losses, select_top_cov_tokens


def test_hand_worked_micro_batch():
    # A = [1, -1, 1, -1] (mean 0); log pi = [-1, -2, -3, -5] (mean -2.75)
    # cov = A * (log pi + 2.75) = [1.75, 0.75 * -1, -0.25, 2.25] -> the top token (rho * N = 1/4 * 4 = 1) is t = 3
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    logp = torch.tensor([[-1.0, -2.0, -3.0, -5.0]], requires_grad=True)
    old = logp.detach() - torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # log-ratios 0.1 .. 0.4
    loss, metrics = kl_cov_token_losses(old, logp, adv, torch.ones(1, 4), KLCovConfig(top_token_fraction=0.25, beta=2))
    e = math.exp
    expected = [-e(0.1), e(0.2), -e(0.3), e(0.4) + 2 * 0.4]
    torch.testing.assert_close(loss, torch.tensor([expected]))
    assert metrics["selected_fraction"].item() == pytest.approx(0.25)
    assert metrics["selected_abs_log_ratio"].item() == pytest.approx(0.4)
    assert metrics["abs_log_ratio"].item() == pytest.approx(0.25)
    # d loss_t / d log pi_t = -A_t * ratio_t + beta * sign(log-ratio_t) * 1[selected]
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-e(0.1), e(0.2), -e(0.3), e(0.4) + 2]]))


def test_padding_is_never_selected_and_has_zero_loss():
    adv = torch.tensor([[5.0, 1.0, 100.0]])
    logp = torch.tensor([[-1.0, -2.0, 50.0]])  # the padded token would have the largest covariance
    mask = torch.tensor([[1, 1, 0]])
    selected = select_top_cov_tokens(adv, logp, mask, top_token_fraction=1.0)
    assert selected.tolist() == [[True, True, False]]
    loss, _ = kl_cov_token_losses(logp, logp, adv, mask, KLCovConfig(top_token_fraction=1.0))
    assert loss[0, 2] == 0


def test_expected_selected_fraction_equals_rho_on_small_micro_batches():
    # 10 valid tokens at rho = 0.05: verl selects max(1, int(0.5)) = 1 token (fraction 0.1, double rho);
    # stochastic rounding selects 0 or 1 with mean 0.5 tokens (fraction 0.05) over distinct micro-batches.
    g = torch.Generator().manual_seed(0)
    counts = []
    for _ in range(4000):
        old, adv = -torch.rand(1, 10, generator=g), torch.randn(1, 10, generator=g)
        counts.append(select_top_cov_tokens(adv, old + 0.01, torch.ones(1, 10), 0.05, old_log_prob=old).sum())
    counts = torch.stack(counts)
    assert set(counts.tolist()) == {0, 1}
    assert counts.float().mean().item() / 10 == pytest.approx(0.05, abs=0.005)
    verl = select_top_cov_tokens(adv, old + 0.01, torch.ones(1, 10), 0.05, old_log_prob=old, rounding="verl")
    assert verl.sum() == 1


def test_verl_rounding_floors_between_whole_numbers():
    # rho * N = 1.85: verl (and rounding="verl") selects 1 token = 0.54 rho; stochastic rounding 1.85 on average.
    g = torch.Generator().manual_seed(1)
    rho, n = 0.0185, 100
    verl, ours = [], []
    for _ in range(2000):
        old, adv = -torch.rand(1, n, generator=g), torch.randn(1, n, generator=g)
        args = (adv, old + 0.01, torch.ones(1, n), rho)
        verl.append(select_top_cov_tokens(*args, old_log_prob=old, rounding="verl").sum().item())
        ours.append(select_top_cov_tokens(*args, old_log_prob=old).sum().item())
    assert set(verl) == {1} and set(ours) == {1, 2}
    assert sum(ours) / len(ours) == pytest.approx(1.85, abs=0.03)


def test_two_ranks_holding_the_same_micro_batch_select_alike_without_the_global_rng():
    # Two "ranks": separate copies of one micro-batch (as under tensor or context parallelism), each with its
    # global RNG in a different state. They must select the same tokens, and leave every RNG stream untouched.
    g = torch.Generator().manual_seed(7)
    old, adv = -torch.rand(4, 30, generator=g), torch.randn(4, 30, generator=g)
    logp = old + 0.1 * torch.randn(4, 30, generator=g)
    mask = torch.ones(4, 30)
    selections = []
    for rank_seed in (0, 1):
        torch.manual_seed(rank_seed)
        before = torch.get_rng_state()
        rank_copy = (adv.clone(), logp.clone(), mask.clone())
        selections.append(select_top_cov_tokens(*rank_copy, 0.013, old_log_prob=old.clone()))
        loss, _ = kl_cov_token_losses(
            old.clone(), logp.clone(), adv.clone(), mask, KLCovConfig(top_token_fraction=0.013)
        )
        assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(selections[0], selections[1])
    # rho * N = 1.56: the draw is the data's, so another micro-batch may round the other way, this one always alike
    assert selections[0].sum() in (1, 2)


def test_rounding_draw_is_uniform_over_micro_batches():
    g = torch.Generator().manual_seed(2)
    draws = torch.stack(
        [
            data_uniform(
                -torch.rand(3, 17, generator=g), torch.randn(3, 17, generator=g), torch.ones(3, 17, dtype=torch.bool)
            )
            for _ in range(3000)
        ]
    )
    assert 0 < draws.min() and draws.max() < 1
    histogram = torch.histc(draws.float(), bins=10, min=0, max=1)
    assert histogram.min() > 240 and histogram.max() < 360  # 300 expected per bin


def test_bad_config_names_the_range():
    with pytest.raises(ValueError, match=r"top_token_fraction=0 is out of range; it must lie in \(0.0, 1.0\]"):
        KLCovConfig(top_token_fraction=0)  # 0 selects nothing: a mistake, not a setting
    with pytest.raises(ValueError, match="top_token_fraction=20"):
        KLCovConfig(top_token_fraction=20)  # percent, not fraction
    with pytest.raises(ValueError, match="beta"):
        KLCovConfig(beta=-1.0)


@pytest.mark.parametrize("rho, num_rows, length", [(0.02, 4, 50), (0.05, 8, 25), (0.5, 2, 7)])
def test_parity_with_verl_kl_cov_where_rounding_agrees(rho, num_rows, length):
    # rho * N is a whole number >= 1 here, so verl's max(1, int(rho N)) and our stochastic rounding agree.
    g = torch.Generator().manual_seed(num_rows)
    mask = torch.ones(num_rows, length, dtype=torch.bool)
    num_selected = rho * mask.sum().item()
    assert num_selected == int(num_selected) >= 1
    old = -torch.rand(num_rows, length, generator=g) * 3
    logp_ours = (old + 0.1 * torch.randn(num_rows, length, generator=g)).requires_grad_()
    logp_verl = logp_ours.detach().clone().requires_grad_()
    adv = torch.randn(num_rows, 1, generator=g).expand(num_rows, length).contiguous()

    loss_mat, _ = kl_cov_token_losses(old, logp_ours, adv, mask, KLCovConfig(top_token_fraction=rho, beta=0.7))
    ours = loss_mat.sum() / mask.sum()  # token-mean, one data-parallel rank
    theirs = verl_kl_cov(old, logp_verl, adv, mask, verl_actor_config(kl_cov_ratio=rho, ppo_kl_coef=0.7))
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(logp_ours.grad, logp_verl.grad)


def test_parity_with_verl_kl_cov_on_ragged_masks():
    g = torch.Generator().manual_seed(3)
    mask = random_response_mask(6, 40, g).bool()
    rho = 2.0 / mask.sum().item()  # exactly two tokens
    old = -torch.rand(6, 40, generator=g)
    logp = old + 0.05 * torch.randn(6, 40, generator=g)
    adv = torch.randn(6, 40, generator=g)
    loss_mat, _ = kl_cov_token_losses(old, logp, adv, mask, KLCovConfig(top_token_fraction=rho))
    theirs = verl_kl_cov(old, logp, adv, mask, verl_actor_config(kl_cov_ratio=rho, ppo_kl_coef=1.0))
    torch.testing.assert_close(loss_mat.sum() / mask.sum(), theirs)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.floats(1e-4, 1.0), st.integers(0, 2**31 - 1))
def test_selection_bounds_for_any_batch(rows, length, rho, seed):
    g = torch.Generator().manual_seed(seed)
    mask = random_response_mask(rows, length, g)
    adv, logp = torch.randn(rows, length, generator=g), torch.randn(rows, length, generator=g)
    selected = select_top_cov_tokens(adv, logp, mask, rho)
    n = int(mask.sum())
    assert not (selected & ~mask.bool()).any()
    assert math.floor(rho * n) <= int(selected.sum()) <= math.ceil(rho * n)
    loss, metrics = kl_cov_token_losses(logp, logp, adv, mask, KLCovConfig(top_token_fraction=rho))
    assert torch.isfinite(loss).all() and all(torch.isfinite(v) for v in metrics.values())
