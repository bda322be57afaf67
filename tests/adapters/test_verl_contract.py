"""Contract with verl's private surface: every private method or field we override or call, with the signature we
rely on. If verl changes any of them this fails first, naming the piece (docs/how-it-plugs-into-verl.md §3).
"""

import inspect

import pytest
import verl


def params(fn):
    return list(inspect.signature(fn).parameters)


def test_pinned_verl_version():
    assert verl.__version__ == "0.9.1", "the adapters are verified against verl 0.9.1 only; see pyproject.toml"


@pytest.mark.parametrize(
    "method, expected",
    [
        ("_compute_old_log_prob", ["self", "batch", "metrics"]),
        ("_compute_ref_log_prob", ["self", "batch", "metrics"]),
        ("_compute_advantage", ["self", "batch", "metrics"]),
        ("_update_actor", ["self", "batch", "metrics"]),
        ("_balance_batch", ["self", "batch", "metrics", "logging_prefix", "keep_minibatch"]),
    ],
)
def test_trainer_step_methods(method, expected):
    from verl.trainer.ppo.v1 import PPOTrainerColocateAsync, PPOTrainerSeparateAsync, PPOTrainerSync

    for cls in (PPOTrainerSync, PPOTrainerColocateAsync, PPOTrainerSeparateAsync):  # one mixin over each
        assert params(getattr(cls, method)) == expected, cls


def test_verl_reads_the_trainer_mode_from_the_config():
    """Why the rlif trainers hand verl a copy of the config with the base mode (not just ``self.trainer_mode``)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.skip.rollout_skip import RolloutTqSkip

    assert "self.trainer_mode = self.config.trainer.v1.trainer_mode" in inspect.getsource(PPOTrainer.__init__)
    assert "self.config.trainer.v1.get(self.trainer_mode" in inspect.getsource(PPOTrainer._build_replay_buffer)
    assert "global_config.trainer.v1.trainer_mode" in inspect.getsource(RolloutTqSkip.__init__)


def test_separate_async_computes_old_log_probs_with_pi_old_restored():
    """verl's separate_async swaps pi_old in around ``super()._compute_old_log_prob``: our flag, set around the whole
    step, therefore computes self-certainty with the same weights as the old log-probs."""
    from verl.trainer.ppo.v1 import PPOTrainerSeparateAsync

    source = inspect.getsource(PPOTrainerSeparateAsync._compute_old_log_prob)
    restore = source.index("self.actor_rollout_wg.restore_model_from_cpu(0)")
    assert restore < source.index("result = super()._compute_old_log_prob(batch, metrics)", restore)


def test_engine_registry_table():
    """The engine-variant test reads verl's private table ``EngineRegistry._engines``: model type -> backend -> key
    (device, or (device, vendor)) -> class."""
    from verl.workers.engine import EngineRegistry, FSDPEngineWithLMHead

    assert EngineRegistry._engines["language_model"]["fsdp"]["cuda"] is FSDPEngineWithLMHead


def test_voting_subset_hooks_where_verl_reads_the_group_size():
    # the voting subset (rlif.vote.trained_per_prompt) runs in _balance_batch, the first step after generation and
    # reward, and sets rollout.n to the trained group size where verl sizes mini-batches from it
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    step = inspect.getsource(PPOTrainer._step_once)
    assert step.index("_compute_reward_colocate") < step.index("_balance_batch") < step.index("_compute_old_log_prob")
    for method in (PPOTrainer._get_required_batch_multiple, PPOTrainer._update_actor):
        assert "self.config.actor_rollout_ref.rollout.n" in inspect.getsource(method)
    balance = inspect.getsource(PPOTrainer._balance_batch)
    assert "_get_required_batch_multiple" in balance
    # every mode runs it (the async trainers keep verl's _step_once), on whole groups that leave the replay buffer
    from verl.trainer.ppo.v1 import PPOTrainerColocateAsync, PPOTrainerSeparateAsync
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    for cls in (PPOTrainerColocateAsync, PPOTrainerSeparateAsync):
        assert cls._step_once is PPOTrainer._step_once and cls._balance_batch is PPOTrainer._balance_batch
    assert "tq.kv_clear(partition_id=partition_id, keys=selected_prompt_uids)" in inspect.getsource(
        ReplayBuffer._materialize_batch
    )


def test_verl_numbers_the_local_updates_of_a_step():
    # the voting subset is seeded by (global step, local update): PPOTrainer.step sets self.local_trigger_step before
    # each _step_once (and to 0 in __init__)
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    assert "self.local_trigger_step = 0" in inspect.getsource(PPOTrainer.__init__)
    source = inspect.getsource(PPOTrainer.step)
    assert source.index("self.local_trigger_step = trigger_idx") < source.index("self._step_once(")


def test_fsdp_engine_surface():
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine, FSDPEngineWithLMHead

    assert params(FSDPEngineWithLMHead.prepare_model_outputs) == [
        "self",
        "output",
        "output_args",
        "micro_batch",
        "logits_processor_func",
    ]
    assert params(FSDPEngine._gather_and_unpad_packed) == ["self", "tensor", "pad_size"]
    source = inspect.getsource(FSDPEngineWithLMHead.prepare_model_inputs)
    for key in ("temperature_rmpad", "temperature", "pad_size", "temperature_is_one", "input_ids_rmpad_rolled"):
        assert f'"{key}"' in source, f"output_args no longer carries {key}"
    assert 'extra_args["shift_labels"]' in source  # the rolled labels the fused forward uses verbatim
    assert params(FSDPEngine.optimizer_step) == ["self"]  # w_bar is invalidated here and in load_checkpoint
    assert "local_path" in params(FSDPEngine.load_checkpoint)


def test_fsdp_fused_forward_feeds_the_decoder_output_and_lm_head_weight_to_the_kernel():
    """The forward hook on ``<hf model>.model`` sees exactly the hidden states verl's fused kernel gets."""
    from verl.models.transformers import dense_common, monkey_patch

    for forward in (dense_common.forward_with_torch_backend, dense_common.forward_with_triton_backend):
        source = inspect.getsource(forward)
        assert "hidden_states = outputs[0]" in source and "self.lm_head.weight" in source
        assert "rolled_labels = shift_labels" in source and "torch.roll(input_ids, shifts=-1, dims=-1)" in source
    assert "outputs = self.model(" in inspect.getsource(dense_common.forward_base_model)
    # text models get dense_common's forward; the vision-language ones their own (not covered)
    assert "dense_common import forward_with_torch_backend" in inspect.getsource(
        monkey_patch.patch_forward_with_backends
    )


def test_megatron_engine_surface():
    from verl.workers.engine import MegatronEngineWithLMHead

    processor = inspect.signature(MegatronEngineWithLMHead._lm_head_logits_processor).parameters
    assert list(processor)[:4] == ["self", "logits", "label", "temperature"]
    assert "batch" in processor
    assert params(MegatronEngineWithLMHead.forward_step) == [
        "self",
        "batch_iter",
        "model",
        "logits_processor_func",
        "postprocess_micro_batch_func",
    ]


def test_megatron_fused_forward_feeds_the_model_hook_what_its_kernel_gets():
    """The forward hook on the last stage's ``GPTModel`` (adapters/megatron_engine.py) sees the kernel's inputs:
    ``labels`` / ``temperature`` / ``packed_seq_params`` keywords, and an output whose ``hidden_states`` are the
    decoder's (before the sequence-parallel gather) next to the fused ``log_probs`` over the output weight shard."""
    from verl.models.mcore import model_forward_fused as fused
    from verl.models.mcore.util import postprocess_thd_engine
    from verl.workers.engine.megatron.transformer_impl import MegatronEngine, MegatronEngineWithLMHead

    legacy = inspect.getsource(fused._fused_GPTModel_forward)
    assert {"labels", "packed_seq_params", "temperature"} <= set(params(fused._fused_GPTModel_forward))
    assert legacy.index("hidden_states=hidden_states") < legacy.index("gather_from_sequence_parallel_region")
    assert "output_weight = model.output_layer.weight" in legacy
    assert "output_weight = model.embedding.word_embeddings.weight" in legacy
    assert (
        "linear_cross_entropy(\n        hidden_states,\n        output_weight,\n        labels,\n        temperature"
        in legacy
    )
    assert "output.log_probs = logprobs" in legacy
    hook_mode = inspect.getsource(fused.fused_output_processor)  # megatron-core >= 0.18
    assert hook_mode.index("hidden_states=hidden_states") < hook_mode.index("gather_from_sequence_parallel_region")
    assert "temperature = context.temperature" in hook_mode and "output_layer.weight" in hook_mode
    inner = inspect.getsource(fused.fused_forward_model_engine)
    assert "labels=labels_rmpad" in inner and "packed_seq_params=packed_seq_params" in inner
    assert "model(temperature=temperature, **forward_kwargs)" in inner
    assert "output_processor_context=FusedOutputProcessorContext(temperature=temperature)" in inner
    assert (
        "postprocess_thd_engine(\n            log_probs,\n            packed_seq_params,\n            input_ids,"
        in inner
    )
    assert params(postprocess_thd_engine)[:5] == [
        "output",
        "packed_seq_params",
        "input_ids",
        "batch_size",
        "post_process",
    ]
    assert "cp_layout" in params(postprocess_thd_engine)
    # static context parallelism: our values are unpacked with the CP layout verl gives its fused forward
    assert params(MegatronEngine._get_context_parallel_layout) == ["unwrapped_model"]
    step = inspect.getsource(MegatronEngineWithLMHead.forward_step)
    assert "cp_layout = self._get_context_parallel_layout(unwrapped_model)" in step
    fused_call = step[step.index("output = fused_forward_fn(") :]
    assert "cp_layout=cp_layout" in fused_call[: fused_call.index("else:")]
    assert params(MegatronEngine.optimizer_step) == ["self"]  # the row-sum cache is dropped here and in load_checkpoint
    assert "local_path" in params(MegatronEngine.load_checkpoint)


def test_extension_points():
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.workers.engine import EngineRegistry

    assert "vendor" in inspect.signature(EngineRegistry.register).parameters
    assert params(RewardManagerBase.run_single) == ["self", "data"]
    assert {"dp_size", "batch_num_tokens", "global_batch_size"} <= set(inspect.signature(agg_loss).parameters)


def test_registries_the_adapters_register_into():
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls, register
    from verl.trainer.ppo.core_algos import (
        get_adv_estimator_fn,
        get_policy_loss_fn,
        register_adv_est,
        register_policy_loss,
    )
    from verl.trainer.ppo.v1 import get_trainer_cls, register_trainer

    for decorator in (register, register_adv_est, register_policy_loss, register_trainer):
        assert params(decorator)[:1] == ["name"] or params(decorator)[:1] == ["name_or_enum"], decorator
    for lookup in (get_reward_manager_cls, get_adv_estimator_fn, get_policy_loss_fn, get_trainer_cls):
        assert len(params(lookup)) == 1, lookup


def test_trainer_helpers():
    from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
    from verl.workers.utils.padding import response_from_nested, response_to_nested

    assert params(compute_rollout_correction_and_add_to_batch)[:2] == ["batch", "rollout_corr_config"]
    assert params(response_from_nested)[:2] == ["tensor", "response_mask"]
    assert params(response_to_nested)[:2] == ["tensor", "response_mask"]


def test_old_log_prob_pass_stores_entropy_for_the_entropy_baseline():
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    source = inspect.getsource(PPOTrainer._compute_old_log_prob)
    assert '"calculate_entropy": True' in source  # verl asks the actor for entropy in every old-log-prob pass
    assert 'data["entropy"] = response_from_nested(' in source  # and stores it response-only under "entropy"


def test_validation_reads_acc_and_pred_from_reward_extra_info():
    from verl.trainer.ppo.metric_utils import process_validation_metrics
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    assert 'extra_field.get("reward_extra_info"' in inspect.getsource(PPOTrainer._validate)
    assert 'core_var = "acc" if "acc" in var2metric2val else "reward"' in inspect.getsource(
        PPOTrainer._val_metrics_update
    )
    assert 'var2vals.get("pred")' in inspect.getsource(process_validation_metrics)  # maj@N votes on pred


def test_test_support_surface():
    """verl_rlif.testing (CPU end-to-end run only): the rollout-class table, the replica's server attributes and the
    process-group start it relies on."""
    from verl.utils.distributed import initialize_global_process_group_ray
    from verl.workers.rollout import base
    from verl.workers.rollout.base import BaseRollout, get_rollout_class
    from verl.workers.rollout.llm_server import LLMServerManager
    from verl.workers.rollout.replica import RolloutReplica

    # a dict keyed (name, mode) holding class paths, and verl's workers look classes up through it
    assert base._ROLLOUT_REGISTRY[("vllm", "async")].endswith("ServerAdapter")
    base._ROLLOUT_REGISTRY[("rlif_contract_probe", "async")] = "verl.workers.rollout.base.BaseRollout"
    try:
        assert get_rollout_class("rlif_contract_probe", "async") is BaseRollout
    finally:
        del base._ROLLOUT_REGISTRY[("rlif_contract_probe", "async")]
    # RLIFHFReplica.launch_servers sets these two: verl reads them directly, not through server_handle/server_address
    init = inspect.getsource(LLMServerManager._initialize_llm_servers)
    assert "server._server_handle for server in" in init and "server._server_address for server in" in init
    replica = inspect.getsource(RolloutReplica.__init__)
    assert "self._server_handle" in replica and "self._server_address" in replica
    assert params(BaseRollout.__init__)[:4] == ["self", "config", "model_config", "device_mesh"]
    source = inspect.getsource(initialize_global_process_group_ray)
    assert "if not torch.distributed.is_initialized()" in source  # why a gloo group started first is kept


def test_custom_sampler_hook_and_replay_buffer_surface():
    """Vote-aware dynamic sampling: verl builds our replay buffer from ``trainer.v1.sampler.custom_sampler`` with these
    keywords, and refills through ``_add_prompts_to_generate(num_prompts)``."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    source = inspect.getsource(PPOTrainer._build_replay_buffer)
    assert "load_extern_type(custom_sampler.path, custom_sampler.name)" in source
    assert "refill_fn=self._add_prompts_to_generate" in source and "sampler_kwargs=" in source
    assert params(PPOTrainer._add_prompts_to_generate) == ["self", "num_prompts"]
    for cls in (ReplayBuffer, ReplayBufferAsync):
        assert params(cls.sample) == ["self", "global_steps", "partition_id", "batch_size"]
    assert {"sampler_kwargs", "refill_fn"} <= set(params(ReplayBuffer.__init__))


def test_agent_loop_keys_and_session_reward_copy():
    """A session's outputs are keyed ``{uid}_{session_id}_{index}`` and carry the final output's reward info."""
    from verl.trainer.ppo.v1 import agent_loop_tq

    source = inspect.getsource(agent_loop_tq)  # the worker class is a Ray actor class: read its module
    assert 'keys.append(f"{uid}_{session_id}_{i}")' in source
    assert 'output.extra_fields["reward_extra_info"] = final_output.extra_fields["reward_extra_info"]' in source


def test_engine_variants_extend_verls_lm_engines():
    from verl.workers import engine

    assert issubclass(engine.FSDPTurboEngineWithLMHead, engine.FSDPEngineWithLMHead)
    if engine.MindspeedEngineWithLMHead is not None:  # only where MindSpeed imports (npu)
        assert issubclass(engine.MindspeedEngineWithLMHead, engine.MegatronEngineWithLMHead)
