"""The shipped configs compose and pass; every misconfiguration is rejected naming its fix (as ``verl-rlif check``)."""

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from verl_rlif.adapters.checks import ConfigError, validate, verify_registered
from verl_rlif.cli import main
from verl_rlif.config import RLIFConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def composed(*overrides, name="rlif"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("name", ["rlif", "rlif_megatron"])
def test_shipped_configs_compose_and_pass(name, monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    config = composed(name=name)
    assert validate(config) == []
    verify_registered(config)
    assert config.actor_rollout_ref.actor.policy_loss.kl_cov_ratio == RLIFConfig().kl_cov.top_token_fraction


def test_yaml_mirrors_the_dataclass_defaults():
    # config.py is the one home of defaults; the yaml lists them for users and must not drift
    from_yaml = RLIFConfig.from_training_config(composed())
    assert dataclasses.asdict(from_yaml) == dataclasses.asdict(RLIFConfig())


@pytest.mark.parametrize(
    "overrides, fix",
    [
        (["trainer.use_v1=false"], "set trainer.use_v1=true"),
        (["trainer.v1.trainer_mode=sync"], "set trainer.v1.trainer_mode=rlif"),
        (["algorithm.adv_estimator=grpo"], "set algorithm.adv_estimator=rlif_gdpo"),
        (["reward.reward_manager.name=naive"], "set reward.reward_manager.name=rlif"),
        (["~ray_kwargs.ray_init.runtime_env.env_vars"], "VERL_ENGINE_VENDOR=rlif"),
        (["ray_kwargs.ray_init.runtime_env.env_vars.VERL_ENGINE_VENDOR=nvidia"], "VERL_ENGINE_VENDOR=rlif"),
        (["actor_rollout_ref.model.use_fused_kernels=true"], "set actor_rollout_ref.model.use_fused_kernels=false"),
        (["actor_rollout_ref.rollout.n=1"], "set actor_rollout_ref.rollout.n>=2"),
        (["algorithm.filter_groups.enable=true"], "set algorithm.filter_groups.enable=false"),
        (["algorithm.rollout_correction.bypass_mode=true"], "set algorithm.rollout_correction.bypass_mode=false"),
        (["rlif.gdpo.weights=[1.0]"], "give one weight per reward component"),
        (["rlif.extractor.default=latex"], "unknown answer extractor 'latex'; registered:"),
        (["rlif.vote.mode=plurality"], "choose one of ['majority', 'share']"),
        (["+rlif.vote.modes=share"], "unknown key(s) ['rlif.vote.modes']"),
    ],
)
def test_each_misconfiguration_is_rejected_with_its_fix(overrides, fix, monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    with pytest.raises(ConfigError, match="verl-rlif config is invalid") as error:
        validate(composed(*overrides))
    assert fix in str(error.value)


def test_engine_vendor_exported_on_the_nodes_is_accepted(monkeypatch):
    monkeypatch.setenv("VERL_ENGINE_VENDOR", "rlif")  # exported before `ray start` on every node
    assert validate(composed("~ray_kwargs.ray_init.runtime_env.env_vars")) == []


def test_vote_only_baseline_needs_no_engine(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    config = composed("rlif.rewards=[vote]", "rlif.gdpo.weights=[1.0]", "~ray_kwargs.ray_init.runtime_env.env_vars")
    assert validate(config) == []


def test_entropy_baseline_needs_the_old_log_prob_pass_but_no_engine(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    entropy = ["rlif.rewards=[entropy]", "rlif.gdpo.weights=[1.0]", "~ray_kwargs.ray_init.runtime_env.env_vars"]
    assert validate(composed(*entropy)) == []
    with pytest.raises(ConfigError, match="computes entropy; set algorithm.rollout_correction.bypass_mode=false"):
        validate(composed(*entropy, "algorithm.rollout_correction.bypass_mode=true"))


def test_kl_cov_with_one_on_policy_update_warns():
    warnings = validate(composed("data.train_batch_size=32", "actor_rollout_ref.actor.ppo_mini_batch_size=32"))
    assert len(warnings) == 1 and "does nothing" in warnings[0] and "ppo_mini_batch_size" in warnings[0]


def test_missing_registration_names_component_and_fallback(monkeypatch):
    from verl.trainer.ppo import core_algos

    monkeypatch.delitem(core_algos.POLICY_LOSS_REGISTRY, "rlif_kl_cov")
    with pytest.raises(
        ConfigError,
        match="(?s)policy loss 'rlif_kl_cov' .*gone from verl's registry.*VERL_USE_EXTERNAL_MODULES=verl_rlif.register",
    ):
        verify_registered(composed())


def test_check_command(capsys):
    assert main(["check", "--config-path", str(CONFIGS)]) == 0
    assert "rlif is valid" in capsys.readouterr().out
    assert main(["check", "--config-path", str(CONFIGS), "actor_rollout_ref.rollout.n=1"]) == 1
    assert "actor_rollout_ref.rollout.n>=2" in capsys.readouterr().err


def test_trainer_init_runs_the_same_validation():
    from verl_rlif.adapters.trainer import RLIFTrainer

    with pytest.raises(ConfigError, match="set trainer.use_v1=true"):
        RLIFTrainer(composed("trainer.use_v1=false"))
    assert OmegaConf.select(composed(), "trainer.v1.trainer_mode") == "rlif"


def test_every_rlif_key_is_documented():
    doc = (CONFIGS.parent / "docs" / "configuration.md").read_text()

    def keys(cls, prefix):
        for field in dataclasses.fields(cls):
            sub = field.default_factory if field.default_factory is not dataclasses.MISSING else None
            if dataclasses.is_dataclass(sub):
                yield from keys(sub, f"{prefix}.{field.name}")
            else:
                yield f"{prefix}.{field.name}"

    missing = [key for key in keys(RLIFConfig, "rlif") if f"`{key}`" not in doc]
    assert not missing, f"document these in docs/configuration.md: {missing}"
