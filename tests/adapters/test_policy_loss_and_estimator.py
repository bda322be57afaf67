"""Policy loss ``rlif_kl_cov`` and estimator ``rlif_gdpo`` through verl's registries with verl's real configs."""

import numpy as np
import pytest
import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn
from verl.workers.config.actor import ActorConfig, PolicyLossConfig
from verl_reference import verl_actor_config, verl_kl_cov

from verl_rlif.config import RLIFConfig
from verl_rlif.core.gdpo import gdpo_advantages


def actor_config(rho, beta, **global_batch_info):
    return ActorConfig(
        strategy="fsdp",
        rollout_n=1,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode="token-mean",
        policy_loss=PolicyLossConfig(loss_mode="rlif_kl_cov", kl_cov_ratio=rho, ppo_kl_coef=beta),
        global_batch_info={"dp_size": 1, **global_batch_info},
    )


def inputs(seed=0, rows=4, length=50):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(rows, length, generator=g)
    logp = old + 0.1 * torch.randn(rows, length, generator=g)
    return old, logp, torch.randn(rows, length, generator=g), torch.ones(rows, length, dtype=torch.bool)


def call(config, old, logp, adv, mask, weights=None, loss_mode="rlif_kl_cov"):
    return get_policy_loss_fn(loss_mode)(
        old_log_prob=old,
        log_prob=logp,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode="token-mean",
        config=config,
        rollout_is_weights=weights,
    )


def test_equals_verl_kl_cov_where_rounding_agrees():
    old, logp, adv, mask = inputs()
    loss, metrics = call(actor_config(0.02, 0.5), old, logp, adv, mask)  # 200 tokens * 0.02 = 4 selected
    torch.testing.assert_close(loss, verl_kl_cov(old, logp, adv, mask, verl_actor_config(0.02, 0.5)))
    assert metrics["rlif/kl_cov/selected_fraction"].item() == pytest.approx(0.02)
    assert set(metrics) == {"actor/ppo_kl", "rlif/kl_cov/selected_fraction", "rlif/kl_cov/selected_abs_log_ratio"}


@pytest.mark.parametrize("rho", [0.0185, 0.004, 0.0003])  # rho N = 1.85 (verl floors), 0.4 and 0.03 (verl inflates)
def test_verl_rounding_equals_verl_kl_cov_where_the_default_rounding_differs(rho):
    old, logp, adv, mask = inputs(rows=2)  # 100 tokens
    loss, metrics = call(actor_config(rho, 1.0), old, logp, adv, mask, loss_mode="rlif_kl_cov_verl_rounding")
    torch.testing.assert_close(loss, verl_kl_cov(old, logp, adv, mask, verl_actor_config(rho, 1.0)))
    assert metrics["rlif/kl_cov/selected_fraction"].item() == pytest.approx(0.01)  # max(1, int(rho N)) = 1 of 100


def test_loss_is_invariant_to_data_parallel_size():
    # the same micro-batch on one of two DP ranks, each holding half the global tokens: verl's agg_loss scales by
    # dp_size / global tokens, so the loss (and the averaged gradient) matches a single rank holding both halves
    old, logp, adv, mask = inputs()
    single, _ = call(actor_config(0.02, 1.0), old, logp, adv, mask)
    per_rank, _ = call(actor_config(0.02, 1.0, dp_size=2, batch_num_tokens=2 * mask.sum().item()), old, logp, adv, mask)
    torch.testing.assert_close(per_rank, single)


def test_rollout_importance_weights_scale_the_token_losses():
    old, logp, adv, mask = inputs()
    base, _ = call(actor_config(0.02, 1.0), old, logp, adv, mask)
    doubled, _ = call(actor_config(0.02, 1.0), old, logp, adv, mask, weights=torch.full(mask.shape, 2.0))
    torch.testing.assert_close(doubled, 2 * base)


def test_estimator_needs_components_and_names_the_trainer_mode():
    mask = torch.ones(4, 3)
    with pytest.raises(ValueError, match="trainer.v1.trainer_mode=rlif"):
        get_adv_estimator_fn("rlif_gdpo")(token_level_rewards=torch.zeros(4, 3), response_mask=mask, index=None)


def test_estimator_broadcasts_core_gdpo_over_valid_tokens():
    g = torch.Generator().manual_seed(0)
    components = torch.rand(6, 2, generator=g)
    index = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    mask = torch.tensor([[1, 1, 0]] * 3 + [[1, 0, 0]] * 3)
    adv, returns = get_adv_estimator_fn("rlif_gdpo")(
        token_level_rewards=torch.zeros(6, 3), response_mask=mask, index=index, reward_components=components
    )
    want = gdpo_advantages(components, index, RLIFConfig().gdpo).advantages
    torch.testing.assert_close(adv, want.unsqueeze(1) * mask)
    assert torch.equal(adv, returns)
