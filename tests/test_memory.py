"""The per-GPU memory estimate (``verl_rlif.memory``, printed by ``verl-rlif check``).

Calibration: verl's own example scripts that are known to run (settings copied from volcengine/verl's examples/,
composed on verl's packaged trainer configs) must be estimated to fit their GPUs; the 32B config as first shipped
(actor resident through rollout next to vLLM at 0.6, no recompute at 16k tokens) must be flagged.
"""

import json
from pathlib import Path

import pytest
import verl
from hydra import compose, initialize_config_dir

from verl_rlif.cli import main
from verl_rlif.configs import CONFIG_DIR
from verl_rlif.memory import GIB, KNOWN_SHAPES, UnknownModel, estimate, model_shape, report

VERL_CONFIGS = str(Path(verl.__file__).parent / "trainer" / "config")
CONFIGS = Path(CONFIG_DIR)


def verl_config(name, overrides):
    with initialize_config_dir(config_dir=VERL_CONFIGS, version_base=None):
        return compose(config_name=name, overrides=["actor_rollout_ref.rollout.name=vllm", *overrides])


A = "actor_rollout_ref."
# (example script under volcengine/verl examples/, GPU GiB, trainer config, overrides as the script sets them)
VERL_EXAMPLES = {
    "tuning/32b/qwen2_32B_grpo_8_h20_megatron_vllm.sh": (96, "ppo_megatron_trainer", [
        "data.max_prompt_length=2048", "data.max_response_length=6144", f"{A}model.path=Qwen/Qwen2.5-32B",
        f"{A}actor.ppo_micro_batch_size_per_gpu=1", f"{A}actor.megatron.tensor_model_parallel_size=8",
        f"{A}actor.megatron.param_offload=True", f"{A}actor.megatron.optimizer_offload=True",
        f"{A}actor.use_kl_loss=True", f"{A}rollout.tensor_model_parallel_size=8",
        f"{A}rollout.gpu_memory_utilization=0.6", f"{A}ref.megatron.param_offload=True",
        "trainer.n_gpus_per_node=8", "trainer.nnodes=1"]),
    "tuning/70b/qwen2-70b_grpo_32_h800_fsdp_vllm.sh": (80, "ppo_trainer", [
        "data.max_prompt_length=512", "data.max_response_length=512", f"{A}model.path=Qwen/Qwen2-72B-Instruct",
        f"{A}model.use_remove_padding=True", f"{A}actor.use_dynamic_bsz=True",
        f"{A}actor.ppo_max_token_len_per_gpu=24000", f"{A}actor.use_kl_loss=True",
        f"{A}model.enable_gradient_checkpointing=True", f"{A}actor.fsdp_config.param_offload=True",
        f"{A}actor.fsdp_config.optimizer_offload=True", f"{A}rollout.tensor_model_parallel_size=16",
        f"{A}rollout.gpu_memory_utilization=0.6", f"{A}ref.fsdp_config.param_offload=True",
        "trainer.n_gpus_per_node=8", "trainer.nnodes=4"]),
    "grpo_trainer/run_qwen2_5-7b_math_megatron_diff_tp.sh": (80, "ppo_megatron_trainer", [
        "data.max_prompt_length=1024", "data.max_response_length=1024", f"{A}model.path=Qwen/Qwen2.5-7B-Instruct",
        f"{A}actor.ppo_micro_batch_size_per_gpu=4", f"{A}actor.megatron.pipeline_model_parallel_size=2",
        f"{A}actor.megatron.tensor_model_parallel_size=2", f"{A}actor.use_kl_loss=True",
        f"{A}rollout.tensor_model_parallel_size=4", f"{A}rollout.gpu_memory_utilization=0.6",
        "trainer.n_gpus_per_node=8", "trainer.nnodes=1"]),
    "grpo_trainer/run_qwen2-7b_math.sh": (80, "ppo_trainer", [
        "data.max_prompt_length=1024", "data.max_response_length=1024", f"{A}model.path=Qwen/Qwen2-7B-Instruct",
        f"{A}model.use_remove_padding=True", f"{A}actor.ppo_micro_batch_size_per_gpu=16",
        f"{A}actor.use_kl_loss=True", f"{A}model.enable_gradient_checkpointing=True",
        f"{A}rollout.tensor_model_parallel_size=2", f"{A}rollout.gpu_memory_utilization=0.6",
        f"{A}ref.fsdp_config.param_offload=True", "trainer.n_gpus_per_node=8", "trainer.nnodes=1"]),
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(VERL_EXAMPLES))
def test_verl_examples_known_to_run_are_estimated_to_fit(script):
    gpu_gib, name, overrides = VERL_EXAMPLES[script]
    result = estimate(verl_config(name, overrides), gpu_gib)
    print("\n".join(result.lines()))
    assert result.over() == [] and result.warnings() == []
    assert {phase.name for phase in result.phases} == {"training", "rollout"}


# The 32B config as first shipped (verl-rlif c2ab244): TP4 x PP2 on 4 x 8 x 80 GB, the actor on the GPU through
# rollout, vLLM at 0.6, no recompute at 16k tokens per micro-batch.
OLD_32B = [
    "data.max_prompt_length=512", "data.max_response_length=3072", f"{A}model.path=Qwen/Qwen2.5-32B",
    f"{A}actor.use_dynamic_bsz=True", f"{A}actor.ppo_max_token_len_per_gpu=16384", f"{A}actor.use_kl_loss=True",
    f"{A}actor.megatron.tensor_model_parallel_size=4", f"{A}actor.megatron.pipeline_model_parallel_size=2",
    f"{A}ref.megatron.param_offload=True", f"{A}rollout.tensor_model_parallel_size=4",
    f"{A}rollout.gpu_memory_utilization=0.6", "trainer.nnodes=4", "trainer.n_gpus_per_node=8",
]  # fmt: skip


def test_the_old_32b_config_is_flagged_in_both_phases():
    result = estimate(verl_config("ppo_megatron_trainer", OLD_32B))
    print("\n".join(result.lines()))
    assert [phase.name for phase in result.over()] == ["training", "rollout"]
    rollout = result.phases[1]
    # the hand count: ~34 GiB of actor state next to vLLM's 48 GiB
    assert 30 * GIB < rollout.parts["actor weights+grads"] + rollout.parts["optimizer"] < 40 * GIB
    assert rollout.parts["vLLM"] == pytest.approx(0.6 * 80 * GIB)
    assert "offload the actor during rollout" in result.warnings()[1]


def test_recompute_and_offload_fix_the_old_32b_config():
    fixed = [
        *OLD_32B,
        f"{A}actor.megatron.param_offload=True",
        f"{A}actor.megatron.optimizer_offload=True",
        f"+{A}actor.megatron.override_transformer_config.recompute_granularity=full",
        f"+{A}actor.megatron.override_transformer_config.recompute_method=uniform",
        f"+{A}actor.megatron.override_transformer_config.recompute_num_layers=1",
    ]
    before = estimate(verl_config("ppo_megatron_trainer", OLD_32B))
    after = estimate(verl_config("ppo_megatron_trainer", fixed))
    assert after.over() == []
    assert after.phases[0].total < 0.75 * before.phases[0].total
    assert "actor weights+grads" not in after.phases[1].parts and "optimizer" not in after.phases[1].parts


def test_parameter_counts_match_the_published_sizes():
    published = {"qwen2.5-7b": 7.62e9, "qwen2.5-32b": 32.8e9, "qwen2.5-72b": 72.7e9, "llama-3.1-70b": 70.6e9}
    for name, params in published.items():
        assert KNOWN_SHAPES[name].params == pytest.approx(params, rel=0.01), name


def test_a_local_config_json_wins_over_the_table(tmp_path):
    hf = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True, "model_type": "llama"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(hf))
    shape = model_shape(str(tmp_path))
    assert (shape.layers, shape.hidden, shape.kv_heads) == (2, 64, 2)
    assert shape.tied_embeddings and not shape.qkv_bias
    # per layer: q 64x64, k and v 64x32 each, o 64x64, MLP 3x64x128, two norms; one tied 1000x64 embedding; final norm
    assert shape.params == 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64) + 1000 * 64 + 64
    (tmp_path / "config.json").write_text(json.dumps({**hf, "num_experts": 8}))
    with pytest.raises(UnknownModel, match="mixture-of-experts"):
        model_shape(str(tmp_path))


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"num_hidden_layers": 2,', "config.json cannot be read as JSON: "),
        ("[1, 2]", "config.json holds a JSON list, not an object"),
        (json.dumps({"num_hidden_layers": 2, "hidden_size": 64, "vocab_size": 10}), "lacks an integer "
         "intermediate_size, num_attention_heads: the model's shape is unknown"),
    ],
)  # fmt: skip
def test_a_broken_local_config_json_is_one_clear_line(tmp_path, text, why):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UnknownModel, match="config.json") as error:
        model_shape(str(tmp_path))
    assert str(tmp_path / "config.json") in str(error.value) and why in str(error.value)
    lines, warnings = report(verl_config("ppo_trainer", [f"{A}model.path={tmp_path}"]))
    assert warnings == [] and lines == [f"memory per GPU: not estimated: {error.value}"]


def test_an_unknown_hub_model_is_not_estimated_and_says_how():
    lines, warnings = report(verl_config("ppo_trainer", [f"{A}model.path=org/unknown-13b"]))
    assert warnings == [] and "not estimated" in lines[0] and "local copy" in lines[0]


def test_more_tokens_per_micro_batch_cost_more_activation_memory():
    small, large = (
        estimate(verl_config("ppo_trainer", [f"{A}model.path=Qwen/Qwen2.5-7B", f"{A}actor.use_dynamic_bsz=True",
                                             f"{A}actor.ppo_max_token_len_per_gpu={tokens}"]))
        for tokens in (8192, 16384)
    )  # fmt: skip
    assert large.phases[0].parts["activations"] == pytest.approx(2 * small.phases[0].parts["activations"])


@pytest.mark.parametrize("name", ["code_7b_fsdp", "math_7b_fsdp", "math_32b_megatron", "math_70b_megatron"])
def test_shipped_experiments_fit_with_headroom(name, capsys):
    assert main(["check", "--config-path", str(CONFIGS), "--config-name", name]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU (estimate, 80 GiB GPU" in out and "exceeds" not in out
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        config = compose(config_name=name)
    for phase in estimate(config).phases:
        assert phase.total < 0.9 * 80 * GIB, (name, phase.name, phase.total / GIB)


def test_check_warns_for_a_smaller_gpu(capsys):
    args = ["check", "--config-path", str(CONFIGS), "--config-name", "math_7b_fsdp", "--gpu-memory-gib", "24"]
    assert main(args) == 0
    assert "exceeds the 24 GiB GPU" in capsys.readouterr().out


def test_the_megatron_experiments_share_one_base():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        big, bigger = (compose(config_name=name) for name in ("math_32b_megatron", "math_70b_megatron"))
    transformer = big.actor_rollout_ref.actor.megatron.override_transformer_config
    assert (transformer.recompute_granularity, transformer.recompute_method) == ("full", "uniform")
    assert big.trainer.max_actor_ckpt_to_keep == bigger.trainer.max_actor_ckpt_to_keep == 2
    assert big.data == bigger.data and big.rlif == bigger.rlif
    assert big.actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu == 32768
    assert bigger.actor_rollout_ref.actor.megatron.tensor_model_parallel_size == 8


def test_a_cpu_run_is_not_estimated():
    lines, warnings = report(verl_config("ppo_trainer", [f"{A}model.path=Qwen/Qwen2.5-7B", "trainer.device=cpu"]))
    assert lines == ["memory per GPU: not estimated (trainer.device=cpu)"] and warnings == []


def shipped(name, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def test_fused_kernels_build_no_logits_on_either_engine():
    fused = f"{A}model.use_fused_kernels=true"
    plain, lean = (estimate(shipped("math_7b_fsdp", *extra)).phases[0] for extra in ([], [fused]))
    # the 7B config's fp32 logits: its token budget x 152064 x 4 bytes (24576 tokens: 13.9 GiB)
    tokens = shipped("math_7b_fsdp").actor_rollout_ref.actor.ppo_max_token_len_per_gpu
    assert plain.parts["logits"] == pytest.approx(tokens * 152064 * 4)
    assert lean.parts["logits"] == 0 and "fused kernels: no logits" in lean.notes
    assert lean.total == pytest.approx(plain.total - plain.parts["logits"])
    megatron = [f"{A}model.path=Qwen/Qwen2.5-7B", f"{A}actor.ppo_micro_batch_size_per_gpu=4"]
    plain, lean, padded = (
        estimate(verl_config("ppo_megatron_trainer", [*megatron, *extra])).phases[0]
        for extra in ([], [fused], [fused, f"{A}model.use_remove_padding=false"])
    )
    assert plain.parts["logits"] > 0 and lean.parts["logits"] == 0
    assert padded.parts["logits"] == plain.parts["logits"]  # verl's Megatron engine drops fused without it


SEPARATE_POOL = [
    "trainer.v1.trainer_mode=rlif_separate_async",
    f"{A}rollout.nnodes=1",
    f"{A}rollout.n_gpus_per_node=8",
    f"{A}rollout.checkpoint_engine.backend=nccl",
]


def test_separate_async_puts_vllm_on_its_own_pool_not_the_training_gpus():
    colocated, separate = (estimate(shipped("math_7b_fsdp", *extra)) for extra in ([], SEPARATE_POOL))
    assert [phase.name for phase in separate.phases] == ["training", "rollout pool"]
    assert separate.phases[0].parts == colocated.phases[0].parts
    pool = separate.phases[1]
    utilization = shipped("math_7b_fsdp").actor_rollout_ref.rollout.gpu_memory_utilization
    assert pool.parts == {"vLLM": utilization * 80 * GIB, "runtime": 3 * GIB}  # no actor state next to vLLM
    assert "standalone rollout pool (8 GPUs), none of the training's" in pool.notes[0]
    assert any(line.startswith("  rollout pool") for line in separate.lines())


@pytest.mark.parametrize(
    "name, key, extra",
    [
        ("ppo_trainer", f"{A}rollout.gpu_memory_utilization", []),
        ("ppo_trainer", f"{A}actor.ppo_max_token_len_per_gpu", [f"{A}actor.use_dynamic_bsz=true"]),
        ("ppo_trainer", "data.max_response_length", []),
        ("ppo_trainer", f"{A}actor.fsdp_config.fsdp_size", []),
        ("ppo_megatron_trainer", f"{A}actor.megatron.use_distributed_optimizer", []),
    ],
)
def test_verl_defaults_are_read_from_the_config_not_repeated(name, key, extra):
    model = f"{A}model.path=Qwen/Qwen2.5-7B"
    config = verl_config("ppo_trainer", [model, f"{A}rollout.gpu_memory_utilization=0.7"])
    assert estimate(config).phases[1].parts["vLLM"] == pytest.approx(0.7 * 80 * GIB)
    lines, warnings = report(verl_config(name, [model, *extra, f"~{key}"]))
    assert warnings == [] and lines == [f"memory per GPU: not estimated: {key} is not set (verl's trainer configs "
                                        "set it): compose the config on verl's"]  # fmt: skip
