"""The shipped configs compose and pass; every misconfiguration is rejected naming its fix (as ``verl-rlif check``)."""

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from verl_rlif.adapters.checks import ConfigError, validate, verify_registered
from verl_rlif.cli import main
from verl_rlif.config import RLIFConfig, config_keys

CONFIGS = Path(__file__).resolve().parents[2] / "verl_rlif" / "configs"


def composed(*overrides, name="rlif"):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


BASES = ["rlif", "rlif_megatron"]  # complete configs that leave data, model and rollout engine to the user
EXPERIMENTS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in [*BASES, "rlif_plugin"])
PRESETS = sorted(p.stem for p in (CONFIGS / "preset").glob("*.yaml"))


def test_the_kit_ships_every_experiment_and_preset():
    assert EXPERIMENTS == ["code_7b_fsdp", "math_32b_megatron", "math_70b_megatron", "math_7b_fsdp"]
    assert PRESETS == ["entropy_only", "full", "ground_truth_grpo", "self_certainty_only", "vote_only"]


@pytest.mark.parametrize("name", BASES)
def test_shipped_configs_compose_and_pass(name, monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    config = composed(name=name)
    assert validate(config) == []
    verify_registered(config)
    assert config.actor_rollout_ref.actor.policy_loss.kl_cov_ratio == RLIFConfig().kl_cov.top_token_fraction


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_and_preset_passes_the_check_command(name, preset, monkeypatch, capsys):
    """`verl-rlif check` as a user runs it: the plugin's rules, registration, and verl's own validation."""
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    assert main(["check", "--config-path", str(CONFIGS), "--config-name", name, f"preset={preset}"]) == 0
    out = capsys.readouterr().out
    assert f"{name} is valid" in out
    # the supervised reference, and only it, is announced as training on labels
    assert ("ground-truth labels ARE used for training" in out) == (preset == "ground_truth_grpo")
    # the single-reward presets announce GRPO's normalisation, the method GDPO's
    assert ("without batch whitening (GRPO normalisation)" in out) == preset.endswith("_only")
    assert ("GDPO (1 x vote, 1 x self_certainty)" in out) == (preset == "full")
    assert "responses per prompt" in out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_presets_change_only_the_reward(name):
    """Same data, model, rollout, optimiser, loss and steps in every preset: only reward-side keys differ."""

    def flat(preset):
        config = OmegaConf.to_container(composed(f"preset={preset}", name=name), resolve=False)
        return dict(_leaves(config))

    full = flat("full")
    # the normalisation belongs to the reward side: one component without batch whitening is GRPO (replication.md)
    allowed = ("rlif.rewards", "rlif.gdpo.weights", "rlif.gdpo.whiten", "preset_name", "trainer.experiment_name")
    reference = ("trainer.v1.trainer_mode", "algorithm.adv_estimator", "reward.", "rlif.ground_truth_reference")
    for preset in PRESETS:
        other = flat(preset)
        changed = {k for k in full.keys() | other.keys() if full.get(k) != other.get(k)}
        ok = allowed + (reference if preset == "ground_truth_grpo" else ())
        assert all(k.startswith(ok) for k in changed), (preset, sorted(changed))
        resolved = composed(f"preset={preset}", name=name).actor_rollout_ref.actor.policy_loss.loss_mode
        assert resolved == "rlif_kl_cov"
        assert other.get("rlif.gdpo.whiten", "response") == ("none" if preset.endswith("_only") else "response")


def test_voters_are_rollout_n_and_the_trained_subset_fits():
    assert validate(composed("actor_rollout_ref.rollout.n=16", "rlif.vote.trained_per_prompt=8")) == []
    for mode in ("rlif_colocate_async", "rlif_separate_async"):  # verl balances (our subset step) in every mode
        extra = SEPARATE_ASYNC if mode == "rlif_separate_async" else [f"trainer.v1.trainer_mode={mode}"]
        assert validate(composed(*extra, "actor_rollout_ref.rollout.n=16", "rlif.vote.trained_per_prompt=8")) == []
    with pytest.raises(ConfigError, match=r"voters_per_prompt=64 but actor_rollout_ref.rollout.n=8: .*rollout.n=64"):
        validate(composed("rlif.vote.voters_per_prompt=64"))
    with pytest.raises(ConfigError, match=r"trained_per_prompt=16 exceeds the 8 voters per prompt"):
        validate(composed("rlif.vote.trained_per_prompt=16"))
    with pytest.raises(ConfigError, match=r"trained_per_prompt=1 must be an int >= 2"):
        validate(composed("rlif.vote.trained_per_prompt=1"))


def test_kl_cov_rounding_selects_the_policy_loss():
    assert composed("rlif.kl_cov.rounding=verl").actor_rollout_ref.actor.policy_loss.loss_mode == (
        "rlif_kl_cov_verl_rounding"
    )
    config = composed("rlif.kl_cov.rounding=verl")
    assert validate(config) == []
    verify_registered(config)
    with pytest.raises(Exception, match=r"rlif.kl_cov.rounding='round' is not valid; choose one of"):
        _ = composed("rlif.kl_cov.rounding=round").actor_rollout_ref.actor.policy_loss.loss_mode


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def test_experiment_names_carry_the_preset():
    config = composed("preset=vote_only", name="math_7b_fsdp")
    assert config.trainer.experiment_name == "math_7b_fsdp_vote_only"
    assert config.trainer.default_local_dir.endswith("verl-rlif/math_7b_fsdp_vote_only")


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
        (["actor_rollout_ref.rollout.n=1"], "set actor_rollout_ref.rollout.n>=2"),
        (["algorithm.filter_groups.enable=true"], "set algorithm.filter_groups.enable=false"),
        (["algorithm.rollout_correction.bypass_mode=true"], "set algorithm.rollout_correction.bypass_mode=false"),
        (["actor_rollout_ref.actor.strategy=veomni"], "engines of fsdp, fsdp2, fsdp_turbo, megatron only"),
        (["trainer.v1.trainer_mode=colocate_async"], "one of rlif (verl's sync) or rlif_colocate_async"),
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


SEPARATE_ASYNC = [
    "trainer.v1.trainer_mode=rlif_separate_async",
    "actor_rollout_ref.rollout.nnodes=1",
    "actor_rollout_ref.rollout.n_gpus_per_node=8",
    "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl",
    "data.train_batch_size=128",
    "actor_rollout_ref.actor.ppo_mini_batch_size=32",
    "trainer.v1.separate_async.parameter_sync_step=4",
]


@pytest.mark.parametrize("name", ["rlif", "math_7b_fsdp"])
@pytest.mark.parametrize("mode", ["rlif", "rlif_colocate_async", "rlif_separate_async"])
def test_check_accepts_every_trainer_mode(name, mode, capsys):
    extra = SEPARATE_ASYNC if mode == "rlif_separate_async" else [f"trainer.v1.trainer_mode={mode}"]
    args = ["check", "--config-path", str(CONFIGS), "--config-name", name, "actor_rollout_ref.rollout.name=vllm"]
    assert main([*args, *extra]) == 0, capsys.readouterr().err
    assert f"{name} is valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, fix",
    [
        (
            ["actor_rollout_ref.rollout.n_gpus_per_node=0"],
            "standalone rollout pool, but actor_rollout_ref.rollout.nnodes",
        ),
        (["actor_rollout_ref.rollout.tensor_model_parallel_size=3"], "does not divide the standalone rollout pool"),
        (["actor_rollout_ref.rollout.checkpoint_engine.backend=naive"], "set it to nccl"),
        (["trainer.v1.separate_async.parameter_sync_step=2"], "data.train_batch_size=128 must equal"),
    ],
)
def test_separate_async_needs_its_own_rollout_pool(change, fix):
    assert validate(composed(*SEPARATE_ASYNC, name="math_7b_fsdp")) == []
    with pytest.raises(ConfigError, match="verl-rlif config is invalid") as error:
        validate(composed(*SEPARATE_ASYNC, *change, name="math_7b_fsdp"))
    assert fix in str(error.value)


def test_separate_async_rollout_fits_its_own_pool_not_the_trainers():
    # a 4-GPU trainer and a standalone 8-GPU rollout pool at rollout TP 8: only the pool must hold a replica
    layout = ["trainer.nnodes=1", "trainer.n_gpus_per_node=4", "actor_rollout_ref.rollout.tensor_model_parallel_size=8"]
    assert validate(composed(*SEPARATE_ASYNC, *layout, name="math_7b_fsdp")) == []
    with pytest.raises(ConfigError, match="does not divide trainer.nnodes=1"):  # colocated: the rule still holds
        validate(composed(*layout, name="math_7b_fsdp"))


def test_bypass_mode_is_refused_naming_the_switch_for_self_certainty(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    with pytest.raises(ConfigError) as error:
        validate(
            composed("trainer.v1.trainer_mode=rlif_colocate_async", "algorithm.rollout_correction.bypass_mode=true")
        )
    assert "bypass_mode=true skips the old-log-prob forward pass that computes self_certainty" in str(error.value)


@pytest.mark.parametrize(
    "metric, why",
    [("acc", "ground-truth accuracy, a label leak"), ("reward", "always 0: every group would be dropped")],
)
def test_verls_group_filter_is_refused_saying_why_and_pointing_to_ours(metric, why):
    with pytest.raises(ConfigError) as error:
        validate(composed("algorithm.filter_groups.enable=true", f"algorithm.filter_groups.metric={metric}"))
    assert why in str(error.value) and "rlif.dynamic_sampling.enable=true" in str(error.value)


def test_dynamic_sampling_brings_its_own_replay_buffer():
    assert validate(composed("rlif.dynamic_sampling.enable=true")) == []
    custom = ["trainer.v1.sampler.custom_sampler.path=my.py", "trainer.v1.sampler.custom_sampler.name=Mine"]
    with pytest.raises(ConfigError, match="custom_sampler selects 'Mine'"):
        validate(composed("rlif.dynamic_sampling.enable=true", *custom))


def test_kl_cov_with_one_on_policy_update_warns():
    warnings = validate(composed("data.train_batch_size=32", "actor_rollout_ref.actor.ppo_mini_batch_size=32"))
    assert len(warnings) == 1 and "numerical noise" in warnings[0] and "ppo_mini_batch_size" in warnings[0]


def test_missing_registration_names_component_and_fallback(monkeypatch):
    from verl.trainer.ppo import core_algos

    monkeypatch.delitem(core_algos.POLICY_LOSS_REGISTRY, "rlif_kl_cov")
    with pytest.raises(
        ConfigError,
        match="(?s)policy loss 'rlif_kl_cov' .*gone from verl's registry.*VERL_USE_EXTERNAL_MODULES=verl_rlif.register",
    ):
        verify_registered(composed())


def test_check_command(capsys):
    assert main(["check", "--config-path", str(CONFIGS), "actor_rollout_ref.rollout.name=vllm"]) == 0
    assert "rlif is valid" in capsys.readouterr().out
    assert main(["check", "--config-path", str(CONFIGS), "actor_rollout_ref.rollout.n=1"]) == 1
    assert "actor_rollout_ref.rollout.n>=2" in capsys.readouterr().err


def test_trainer_init_runs_the_same_validation():
    from verl_rlif.adapters.trainer import RLIFTrainer

    with pytest.raises(ConfigError, match="set trainer.use_v1=true"):
        RLIFTrainer(composed("trainer.use_v1=false"))
    assert OmegaConf.select(composed(), "trainer.v1.trainer_mode") == "rlif"


def test_every_rlif_key_is_documented():
    doc = (CONFIGS.parents[1] / "docs" / "configuration.md").read_text()

    keys = config_keys()
    assert "rlif.vote.mode" in keys and "rlif.kl_cov.top_token_fraction" in keys and "rlif.vote" not in keys
    missing = [key for key in keys if f"`{key}`" not in doc]
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_check_runs_verls_own_validation_and_names_the_rollout_engine(capsys):
    args = ["check", "--config-path", str(CONFIGS), "--config-name", "math_7b_fsdp"]
    assert main([*args, "actor_rollout_ref.actor.use_dynamic_bsz=false"]) == 1
    assert "ppo_micro_batch_size_per_gpu" in capsys.readouterr().err  # verl's message, before any Ray or GPU
    assert main(["check", "--config-path", str(CONFIGS)]) == 1  # the base config leaves the engine to the user
    assert "set actor_rollout_ref.rollout.name=vllm" in capsys.readouterr().err


def test_check_warns_about_data_files_it_cannot_see(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLIF_DATA_DIR", str(tmp_path))
    args = ["check", "--config-path", str(CONFIGS), "--config-name", "math_7b_fsdp"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/math.parquet" in out and "verl-rlif prepare-data" in out
    for name in ["math", "math500", "aime2024", "amc"]:
        (tmp_path / f"{name}.parquet").write_bytes(b"")
    assert main(args) == 0
    assert "not found" not in capsys.readouterr().out


def test_ground_truth_reference_must_not_use_the_plugins_trainer(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    reference = ["preset=ground_truth_grpo"]
    with pytest.raises(ConfigError, match="trainer.v1.trainer_mode='rlif' contradicts rlif.ground_truth_reference"):
        validate(composed(*reference, "trainer.v1.trainer_mode=rlif", name="math_7b_fsdp"))
    async_mode = "trainer.v1.trainer_mode=rlif_colocate_async"
    with pytest.raises(ConfigError, match="set trainer.v1.trainer_mode=colocate_async"):  # verl's own async mode
        validate(composed(*reference, async_mode, name="math_7b_fsdp"))
    with pytest.raises(ConfigError, match="reward.reward_manager.name='rlif' contradicts"):
        validate(composed(*reference, "reward.reward_manager.name=rlif", name="math_7b_fsdp"))
    bad_path = "reward.custom_reward_function.path=pkg://verl_rlif.no_such_module"
    with pytest.raises(ConfigError, match="no_such_module:compute_score cannot be loaded"):
        verify_registered(composed(*reference, bad_path, name="math_7b_fsdp"))
    # a label-free config with verl's trainer is still an error that names the fix, not a silent reference
    with pytest.raises(ConfigError, match="set trainer.v1.trainer_mode=rlif"):
        validate(composed("trainer.v1.trainer_mode=sync", name="math_7b_fsdp"))


def test_the_rlif_trainer_refuses_the_ground_truth_reference():
    from verl_rlif.adapters.trainer import RLIFTrainer

    with pytest.raises(ConfigError, match="contradicts rlif.ground_truth_reference=true"):
        RLIFTrainer(composed("preset=ground_truth_grpo", "trainer.v1.trainer_mode=rlif", name="math_7b_fsdp"))


@pytest.mark.parametrize(
    "overrides, wrong",
    [
        (["trainer.nnodes=2"], "actor_rollout_ref.actor.megatron TP x PP x CP = 32 does not divide"),
        (["trainer.nnodes=1", "trainer.n_gpus_per_node=4"], "actor_rollout_ref.rollout TP x DP x PP = 8 GPUs"),
        (["trainer.nnodes=5", "trainer.n_gpus_per_node=8"], "= 40 GPUs"),
    ],
)
def test_parallel_layouts_that_do_not_fit_the_gpus_are_rejected(overrides, wrong):
    # verl skips its own divisibility check when use_dynamic_bsz is true, as every shipped config sets
    assert validate(composed(name="math_70b_megatron")) == []
    with pytest.raises(ConfigError, match="does not divide") as error:
        validate(composed(*overrides, name="math_70b_megatron"))
    assert wrong in str(error.value)


@pytest.mark.parametrize(
    "override, wrong",
    [
        ("trainer.n_gpus_per_node=0", "= 0 GPUs: set trainer.nnodes and trainer.n_gpus_per_node to at least 1"),
        ("trainer.nnodes=-1", "= -8 GPUs: set trainer.nnodes and trainer.n_gpus_per_node to at least 1"),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size=0", "TP x DP x PP = 0: set each parallel size"),
        ("actor_rollout_ref.actor.megatron.tensor_model_parallel_size=0", "TP x PP x CP = 0: set each parallel size"),
    ],
)
def test_zero_gpus_or_a_zero_parallel_size_is_a_message_not_a_division_by_zero(override, wrong):
    with pytest.raises(ConfigError) as error:
        validate(composed(override, name="math_70b_megatron"))
    assert wrong in str(error.value)


def test_rollout_replica_must_span_whole_nodes():
    ok = ["trainer.nnodes=2", "trainer.n_gpus_per_node=4", "actor_rollout_ref.rollout.tensor_model_parallel_size=8"]
    assert validate(composed(*ok, name="math_7b_fsdp")) == []
    bad = ["trainer.nnodes=3", "trainer.n_gpus_per_node=4", "actor_rollout_ref.rollout.tensor_model_parallel_size=6"]
    with pytest.raises(ConfigError, match="must span whole nodes"):
        validate(composed(*bad, name="math_7b_fsdp"))


def test_reference_errors_point_at_the_preset(monkeypatch):
    monkeypatch.delenv("VERL_ENGINE_VENDOR", raising=False)
    with pytest.raises(ConfigError, match="preset=ground_truth_grpo sets all of these"):
        validate(composed("rlif.ground_truth_reference=true", name="math_7b_fsdp"))


def test_a_ground_truth_reward_function_in_a_label_free_run_is_flagged_as_ignored():
    reward = "reward.custom_reward_function.path=pkg://verl_rlif.adapters.ground_truth_reward"
    warnings = validate(composed(reward, name="math_7b_fsdp"))
    assert any("is ignored" in w and "preset=ground_truth_grpo" in w for w in warnings)


def test_compose_errors_name_the_valid_choices(capsys):
    args = ["check", "--config-path", str(CONFIGS), "--config-name"]
    assert main([*args, "math_7b_fsdp", "rlif.kl_cov.top_token_frac=0.01"]) == 2
    err = capsys.readouterr().err
    assert "did you mean rlif.kl_cov.top_token_fraction?" in err and "'rlif.vote.mode'" in err
    assert main([*args, "math_7b"]) == 2
    assert "'math_7b_fsdp'" in capsys.readouterr().err


def test_check_warns_when_the_training_data_is_smaller_than_one_batch(tmp_path, monkeypatch, capsys):
    import pandas as pd

    monkeypatch.setenv("RLIF_DATA_DIR", str(tmp_path))
    for name in ["math500", "aime2024", "amc"]:
        (tmp_path / f"{name}.parquet").write_bytes(b"")
    pd.DataFrame({"prompt": ["a"] * 3}).to_parquet(tmp_path / "math.parquet")
    args = ["check", "--config-path", str(CONFIGS), "--config-name", "math_7b_fsdp"]
    assert main([*args, "data.train_batch_size=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4"]) == 0
    assert "hold 3 rows, fewer than data.train_batch_size=4" in capsys.readouterr().out
    assert main([*args, "data.train_batch_size=2", "actor_rollout_ref.actor.ppo_mini_batch_size=2"]) == 0
    assert "fewer than" not in capsys.readouterr().out


def test_fused_kernels_pass_with_the_fsdp_engine():
    assert validate(composed("actor_rollout_ref.model.use_fused_kernels=true", name="rlif")) == []


def test_fused_kernels_pass_with_the_megatron_engine():
    assert validate(composed("actor_rollout_ref.model.use_fused_kernels=true", name="rlif_megatron")) == []


def test_fused_kernels_pass_with_megatron_context_parallel():
    fused = "actor_rollout_ref.model.use_fused_kernels=true"
    cp = "actor_rollout_ref.actor.megatron.context_parallel_size=2"
    assert validate(composed(fused, cp, name="rlif_megatron")) == []


def test_fused_kernels_with_megatron_dynamic_context_parallel_are_refused_naming_the_switch():
    fused = "actor_rollout_ref.model.use_fused_kernels=true"
    dynamic = "actor_rollout_ref.actor.megatron.dynamic_context_parallel=true"
    switch = "dynamic_context_parallel=false, or actor_rollout_ref.model.use_fused_kernels=false"
    with pytest.raises(ConfigError, match=switch):
        validate(composed(fused, dynamic, name="rlif_megatron"))
    assert validate(composed(dynamic, name="rlif_megatron")) == []  # unfused kernels: path (i') runs
