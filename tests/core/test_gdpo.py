"""GDPO: hand-worked groups, zero-variance handling, properties, and parity with verl 0.9.1's ``gdpo``."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from verl_reference import random_response_mask, verl_gdpo

from verl_rlif.config import GDPOConfig
from verl_rlif.core.gdpo import gdpo_advantages


def test_one_group_by_hand():
    # r = [1, 0, 0, 0]: mean 1/4, unbiased std sqrt((9/16 + 3/16) / 3) = 1/2 -> z = [3/2, -1/2, -1/2, -1/2].
    # Whitening: mean 0, unbiased var (9/4 + 3/4) / 3 = 1 -> unchanged up to the 1e-8 / 1e-6 epsilons.
    out = gdpo_advantages(torch.tensor([[1.0], [0.0], [0.0], [0.0]]), ["q"] * 4, GDPOConfig(weights=(1.0,)))
    torch.testing.assert_close(out.advantages, torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.component_z[:, 0], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5, rtol=0)


def test_components_are_normalised_separately():
    # Component 2 is 1000x larger; after per-group z-scoring both weigh the same.
    vote = torch.tensor([1.0, 0.0, 1.0, 0.0])
    sc = torch.tensor([2000.0, 1000.0, 1000.0, 2000.0])
    out = gdpo_advantages(torch.stack([vote, sc], 1), ["q"] * 4)
    # vote: mean 1/2, unbiased std sqrt(1/3) -> z = +-(1/2) / sqrt(1/3) = +-sqrt(3)/2; sc likewise, 1000x larger
    half_root3 = 3**0.5 / 2
    torch.testing.assert_close(out.component_z[:, 0], half_root3 * torch.tensor([1.0, -1.0, 1.0, -1.0]))
    torch.testing.assert_close(out.component_z[:, 0], out.component_z[:, 1] * torch.tensor([1.0, 1.0, -1.0, -1.0]))
    # vote and sc agree on responses 0 and 1 and cancel on 2 and 3
    assert out.advantages[2].abs() < 1e-5 and out.advantages[3].abs() < 1e-5  # up to eps / std
    assert out.advantages[0] > 0 > out.advantages[1]


def test_zero_variance_and_singleton_groups_give_zero():
    rewards = torch.tensor([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0], [5.0, 5.0]])  # group a: component 0 constant
    out = gdpo_advantages(rewards, ["a", "a", "a", "b"])
    assert torch.equal(out.component_z[:, 0], torch.zeros(4))  # 0.1 * 3 / 3 != 0.1 in floats: still exactly 0
    assert torch.equal(out.component_z[3], torch.zeros(2))  # a group of one has no signal
    assert out.zero_variance_group_fraction.tolist() == [1.0, 0.5]
    assert torch.isfinite(out.advantages).all()


def test_zero_weight_drops_a_component():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(12, 2, generator=g)
    ids = np.repeat(np.arange(3), 4)
    both = gdpo_advantages(rewards, ids, GDPOConfig(weights=(1.0, 0.0)))
    alone = gdpo_advantages(rewards[:, :1], ids, GDPOConfig(weights=(1.0,)))
    torch.testing.assert_close(both.advantages, alone.advantages)


def test_token_whitening_weights_responses_by_length():
    # One group of 2: unbiased std of [1, 0] is 1/sqrt(2), so pre-whitening A = +-(1/2) / (1/sqrt(2) + eps).
    rewards = torch.tensor([[1.0], [0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])  # lengths 3 and 1
    out = gdpo_advantages(rewards, ["q", "q"], GDPOConfig(weights=(1.0,), whiten="token"), response_mask=mask)
    a = torch.tensor([0.5, -0.5]) / (2**-0.5 + 1e-6)
    values = torch.tensor([a[0]] * 3 + [a[1]])  # token-level view: the long response counts 3 times
    expected = (a - values.mean()) / (values.var(correction=1) + 1e-8).sqrt()
    torch.testing.assert_close(out.advantages, expected, atol=1e-5, rtol=0)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="2 entries but there are 3 reward components"):
        gdpo_advantages(torch.zeros(4, 3), [0] * 4)
    with pytest.raises(ValueError, match="needs response_mask"):
        gdpo_advantages(torch.zeros(4, 2), [0] * 4, GDPOConfig(whiten="token"))
    with pytest.raises(ValueError, match=r"\['response', 'token', 'none'\]"):
        GDPOConfig(whiten="batch")
    with pytest.raises(ValueError, match="4 group ids for 3 responses"):
        gdpo_advantages(torch.zeros(3, 2), [0] * 4)


def test_parity_with_verl_gdpo_token_whitening():
    g = torch.Generator().manual_seed(1)
    num, length = 48, 9
    uids = np.array([f"u{i // 6}" for i in range(num)], dtype=object)
    rewards = torch.stack([torch.randint(0, 2, (num,), generator=g).float(), torch.randn(num, generator=g)], 1)
    rewards[:6, 0] = 1.0  # one exactly zero-variance group
    mask = random_response_mask(num, length, g)
    weights = (1.0, 0.5)
    ours = gdpo_advantages(rewards, uids, GDPOConfig(weights=weights, whiten="token"), response_mask=mask)
    theirs = verl_gdpo(rewards, uids, mask, weights)
    torch.testing.assert_close(ours.advantages.unsqueeze(1) * mask, theirs, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Properties

group_sizes = st.lists(st.integers(1, 6), min_size=1, max_size=8)


def batch_from(sizes, seed, components=2):
    g = torch.Generator().manual_seed(seed)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    rewards = torch.randn(len(ids), components, generator=g)
    rewards[torch.rand(len(ids), generator=g) < 0.3] = 1.0  # ties and constant groups
    return rewards, ids


@settings(max_examples=100, deadline=None)
@given(group_sizes, st.integers(0, 2**31 - 1), st.sampled_from(["response", "token"]))
def test_finite_for_any_grouping(sizes, seed, whiten):
    rewards, ids = batch_from(sizes, seed)
    mask = random_response_mask(len(ids), 5, torch.Generator().manual_seed(seed))
    out = gdpo_advantages(rewards, ids, GDPOConfig(whiten=whiten), response_mask=mask)
    for t in (out.advantages, out.component_z, out.component_std, out.zero_variance_group_fraction):
        assert torch.isfinite(t).all()


@settings(max_examples=100, deadline=None)
@given(group_sizes, st.integers(0, 2**31 - 1), st.randoms())
def test_permutation_within_groups(sizes, seed, rnd):
    rewards, ids = batch_from(sizes, seed)
    perm = np.arange(len(ids))
    for g in np.unique(ids):  # shuffle positions within each group only
        idx = np.flatnonzero(ids == g)
        perm[idx] = rnd.sample(list(idx), len(idx))
    base = gdpo_advantages(rewards, ids).advantages
    permuted = gdpo_advantages(rewards[perm], ids[perm]).advantages
    torch.testing.assert_close(permuted, base[perm], atol=1e-5, rtol=0)


@settings(max_examples=100, deadline=None)
@given(group_sizes, st.integers(0, 2**31 - 1), st.floats(1e-3, 1e3), st.floats(-50, 50))
def test_each_component_scale_and_shift_invariant(sizes, seed, scale, shift):
    rewards, ids = batch_from(sizes, seed)
    rewards = rewards.double()  # so the rescaled input itself is not rounded
    rescaled = rewards.clone()
    rescaled[:, 1] = rescaled[:, 1] * scale + shift
    # eps sits next to the std, so invariance holds up to ~eps / std: test the algebra with a negligible eps.
    config = GDPOConfig(eps=1e-12)
    base, moved = gdpo_advantages(rewards, ids, config), gdpo_advantages(rescaled, ids, config)
    torch.testing.assert_close(moved.component_z, base.component_z, atol=1e-5, rtol=0)
    # When components cancel (anti-correlated within every group) the summed signal is ~0 and whitening
    # amplifies rounding against its 1e-8 floor: that degenerate batch carries no signal to compare.
    assume(base.component_z.sum(dim=1).std(correction=0) > 1e-2)
    torch.testing.assert_close(moved.advantages, base.advantages, atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed", range(5))
def test_no_whitening_with_one_component_equals_verl_grpo(seed):
    # Random groups of 2..8 responses: 0/1 votes and continuous scores, a third of the groups constant.
    # The single-reward presets must be verl's GRPO. Constant groups use dyadic values (0, 1, -1.25): verl's float32
    # mean of a repeated non-dyadic value can miss it by an ulp, and its (r - mean) / (0 + 1e-6) then gives the
    # group advantages of order 0.1 from rounding alone; ours gives 0 there (the zero-variance test is on values).
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(2, 9, (24,), generator=g).tolist()
    ids = np.repeat(np.arange(len(sizes)), sizes)
    for rewards in (torch.randint(0, 2, (len(ids),), generator=g).float(), torch.randn(len(ids), generator=g)):
        for group in range(0, len(sizes), 3):
            rewards[torch.from_numpy(ids == group)] = (0.0, 1.0, -1.25)[group % 3]
        mask = torch.ones(len(ids), 5)
        mask[:, 3:] = (torch.rand(len(ids), 2, generator=g) > 0.5).float()
        scores = torch.zeros(len(ids), 5)
        scores[:, 0] = rewards
        verl_adv, _ = compute_grpo_outcome_advantage(scores, mask, ids)
        ours = gdpo_advantages(rewards[:, None], ids, GDPOConfig(weights=(1.0,), whiten="none"))
        torch.testing.assert_close(ours.advantages[:, None] * mask, verl_adv, atol=1e-5, rtol=1e-5)
        assert ours.zero_variance_group_fraction.item() >= 1 / 3


def test_batch_std_is_the_whitening_scale_in_every_mode():
    # 90 % of 128 groups of 8 constant: GRPO advantages have batch std ~0.29, so response whitening would multiply
    # them by ~3.35 (the factor the single-reward presets no longer apply).
    ids = np.repeat(np.arange(128), 8)
    rewards = torch.zeros(len(ids), 1)
    rewards[: 13 * 8 : 2] = 1.0  # 13 groups of 4 right answers out of 8
    mask = torch.ones(len(ids), 3)
    for whiten in ("response", "token", "none"):
        out = gdpo_advantages(rewards, ids, GDPOConfig(weights=(1.0,), whiten=whiten), response_mask=mask)
        unwhitened = gdpo_advantages(rewards, ids, GDPOConfig(weights=(1.0,), whiten="none")).advantages
        expected = (unwhitened.double().var(correction=1) + 1e-8).sqrt()
        # token mode's Bessel correction counts tokens (3N - 1, not N - 1): equal lengths agree to 1/(3N)
        torch.testing.assert_close(out.batch_std.double(), expected, rtol=1e-3 if whiten == "token" else 1e-6, atol=0)
    assert 3.3 < 1 / out.batch_std.item() < 3.4
    whitened = gdpo_advantages(rewards, ids, GDPOConfig(weights=(1.0,), whiten="response")).advantages
    torch.testing.assert_close(whitened, unwhitened / out.batch_std, rtol=1e-5, atol=1e-6)


def test_near_identical_values_count_as_zero_variance():
    # Group a: self-certainty differing by kernel noise (1e-6 relative); group b: a real difference.
    sc = torch.tensor([12.0, 12.0 + 1.2e-5, 12.0 - 6e-6, 11.0, 12.5, 12.0])
    ids = ["a", "a", "a", "b", "b", "b"]
    out = gdpo_advantages(sc[:, None], ids, GDPOConfig(weights=(1.0,), whiten="none"))
    assert torch.equal(out.component_z[:3, 0], torch.zeros(3))  # not +-1 from noise
    assert out.component_z[3:, 0].abs().min() > 0.1
    assert out.zero_variance_group_fraction.tolist() == [0.5]
    exact = gdpo_advantages(sc[:, None], ids, GDPOConfig(weights=(1.0,), whiten="none", zero_variance_rtol=0.0))
    assert exact.zero_variance_group_fraction.tolist() == [0.0]
    assert exact.component_z[:3, 0].abs().max() > 0.5  # exact equality turns the noise into a z-score
    # the tolerance scales with the component: the same noise on a 1000x larger reward is still noise
    scaled = gdpo_advantages(1000 * sc[:, None], ids, GDPOConfig(weights=(1.0,), whiten="none"))
    assert scaled.zero_variance_group_fraction.tolist() == [0.5]


def test_zero_variance_tolerance_is_validated():
    with pytest.raises(ValueError, match="zero_variance_rtol"):
        GDPOConfig(zero_variance_rtol=-1.0)
