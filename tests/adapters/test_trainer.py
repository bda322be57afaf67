"""Trainer mode ``rlif`` on a real TransferQueue (Ray on CPU): the advantage step and the self-certainty flag.

The batch is put into TransferQueue the way verl's v1 agent loop and actor put it (nested fields, answer keys
inside ``extra_fields``, verl's own balancing padding). The trainer is built with ``__new__`` because its
``__init__`` starts worker groups; the narrowest boundary stubbed is the actor worker group's
``compute_log_prob`` (a Ray call), which writes what our engine returns.
"""

import zlib

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from verl_rlif.adapters.checks import TRAINER_MODES  # noqa: E402
from verl_rlif.adapters.trainer import (  # noqa: E402
    MISSING_SELF_CERTAINTY,
    RLIFColocateAsyncTrainer,
    RLIFSeparateAsyncTrainer,
    RLIFSteps,
    RLIFTrainer,
)
from verl_rlif.adapters.vote_subset import VOTED_KEY, TrainedSubset  # noqa: E402
from verl_rlif.config import RLIFConfig  # noqa: E402
from verl_rlif.core.step import rlif_step  # noqa: E402
from verl_rlif.core.vote_subset import select_trained_rows  # noqa: E402

UIDS = ["a"] * 4 + ["b"] * 4
KEYS = ["1", "1", "2", "", "7", "7", "7", "8"]
PROMPT_LEN, RESPONSE_LENS = 3, [2, 5, 3, 3, 4, 1, 5, 2]
PARTITION = "train"


@pytest.fixture(scope="module")
def transfer_queue():
    # TransferQueue's controller and each storage unit reserve one Ray CPU: 2 real cores need 3+ logical CPUs.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    ray.shutdown()


def put_batch(acc, seed=0, with_self_certainty=True, keep=None):
    """8 responses in 2 groups as verl's agent loop stores them, balanced to 10 rows with verl's padding.
    ``keep(batch) -> batch`` runs between the agent loop's rows and the balancing (the voting-subset step)."""
    g = torch.Generator().manual_seed(seed)
    keys, samples, tags = [], [], []
    for i, (uid, key, length) in enumerate(zip(UIDS, KEYS, RESPONSE_LENS, strict=True)):
        keys.append(f"{uid}{seed}_{i}_0")
        info = {"answer_key": key, "pred": key, "has_answer": float(bool(key)), "acc": acc[i]}
        samples.append(
            dict(
                prompts=torch.arange(PROMPT_LEN),
                responses=torch.arange(length),
                response_mask=torch.ones(length, dtype=torch.int64),
                rm_scores=torch.zeros(length),
                rollout_log_probs=-torch.rand(length, generator=g),
                uid=f"{uid}{seed}",
                extra_fields={"reward_extra_info": info, "min_global_steps": 0, "max_global_steps": 0},
            )
        )
        seq = PROMPT_LEN + length
        tags.append({"status": "success", "prompt_len": PROMPT_LEN, "response_len": length, "seq_len": seq})
    tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=tu.list_of_dict_to_tensordict(samples), tags=tags)
    batch = tq.kv_batch_put(keys=keys, partition_id=PARTITION, tags=tags)
    if keep is not None:
        batch = keep(batch)
    batch = upsample_batch_to_divisible_size(batch, 5, eos_token_id=0)  # verl's balancing padding: 10 rows
    lengths = [t["seq_len"] for t in batch.tags]
    nested = lambda: torch.nested.as_nested_tensor(  # noqa: E731
        [torch.rand(n, generator=g) for n in lengths], layout=torch.jagged
    )
    # what the old-log-prob pass wrote: response-only old log-probs; our engine's full-sequence self_certainty
    response_lengths = [t["response_len"] for t in batch.tags]
    old = [-torch.rand(n, generator=g) for n in response_lengths]
    entropy = [3 * torch.rand(n, generator=g) for n in response_lengths]  # verl stores it response-only
    fields = {
        "old_log_probs": torch.nested.as_nested_tensor(old, layout=torch.jagged),
        "entropy": torch.nested.as_nested_tensor(entropy, layout=torch.jagged),
    }
    if with_self_certainty:
        fields["self_certainty"] = nested()
    tq.kv_batch_put(keys=batch.keys, partition_id=PARTITION, fields=TensorDict(fields, batch_size=len(lengths)))
    return batch


def make_trainer(rlif=None, n=4):
    trainer = RLIFTrainer.__new__(RLIFTrainer)
    trainer.config = OmegaConf.create(
        {
            "algorithm": {"rollout_correction": {"rollout_is": None, "rollout_rs": None, "bypass_mode": False}},
            "actor_rollout_ref": {"rollout": {"n": n}},
            "data": {"seed": None},
        }
    )
    trainer.rlif = rlif or RLIFConfig()
    trainer._subset = TrainedSubset(trainer.rlif, trainer.config)
    return trainer


def fetch(batch, *names):
    data = tq.kv_batch_get(keys=batch.keys, partition_id=PARTITION, select_fields=list(names))
    return {name: data[name].to_padded_tensor(0.0) for name in names}


def expected_step(batch, acc):
    got = fetch(batch, "self_certainty", "response_mask")
    real = 8
    # the response part of each full sequence: positions prompt_len-1 .. prompt_len+len-2 predict the response
    token_sc = torch.zeros(real, max(RESPONSE_LENS))
    for i, length in enumerate(RESPONSE_LENS):
        token_sc[i, :length] = got["self_certainty"][i, PROMPT_LEN - 1 : PROMPT_LEN - 1 + length]
    mask = got["response_mask"][:real, : max(RESPONSE_LENS)]
    return rlif_step(UIDS, KEYS, token_sc, mask, RLIFConfig(), correct=acc)


def test_registered_as_trainer_mode():
    assert get_trainer_cls("rlif") is RLIFTrainer
    assert get_trainer_cls("sync").__module__.startswith("verl.")


@pytest.mark.parametrize("mode", sorted(TRAINER_MODES))
def test_every_mode_is_the_mixin_over_verls_registered_trainer(mode):
    cls, base_mode = get_trainer_cls(mode), TRAINER_MODES[mode]
    assert cls.base_mode == base_mode
    assert cls.__mro__[1:3] == (RLIFSteps, get_trainer_cls(base_mode))  # our steps wrap verl's, nothing between
    assert "_build_replay_buffer" not in vars(cls) and "_build_replay_buffer" not in vars(RLIFSteps)


def test_advantage_step_on_transfer_queue(transfer_queue):
    acc = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    batch = put_batch(acc)
    metrics = {}
    make_trainer()._compute_advantage(batch, metrics)
    out = fetch(batch, "advantages", "returns", "rm_scores", "response_mask")
    want = expected_step(batch, acc)
    mask = out["response_mask"]
    for i in range(8):  # the advantage is the response's GDPO value on each of its tokens
        assert torch.allclose(out["advantages"][i, : RESPONSE_LENS[i]], want.advantages[i].expand(RESPONSE_LENS[i]))
        assert out["rm_scores"][i, RESPONSE_LENS[i] - 1] == pytest.approx(want.combined_reward[i].item())
    assert torch.equal(out["returns"], out["advantages"])
    assert out["advantages"][8:].abs().sum() == 0  # verl's padding rows (copies of row 0) take no part
    assert (out["advantages"] * (1 - mask)).abs().sum() == 0
    assert metrics["rlif/pseudo_label_acc"] == pytest.approx(0.5)
    assert metrics["rlif/majority_ratio/mean"] == pytest.approx(want.metrics["rlif/majority_ratio/mean"])
    assert metrics["rlif/self_certainty/mean"] == pytest.approx(want.metrics["rlif/self_certainty/mean"])
    assert any(key.startswith("rollout_corr/") for key in metrics)  # verl's rollout-correction step still ran


def test_voting_on_more_responses_than_trained(transfer_queue):
    # 4 voters per group, 2 trained: group a votes 1,1,2,- (1 wins), group b 7,7,7,8 (7 wins)
    rlif = RLIFConfig.from_mapping(
        {"rewards": ["vote"], "gdpo": {"weights": [1.0], "whiten": "none"}, "vote": {"trained_per_prompt": 2}}
    )
    trainer = make_trainer(rlif, n=4)
    assert trainer._subset.active
    acc = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    metrics, dropped = {}, []

    def keep(batch):
        kept = trainer._subset.vote_and_keep(batch, metrics, seed=5)
        dropped.extend(sorted(set(batch.keys) - set(kept.keys)))
        return kept

    batch = put_batch(acc, seed=6, keep=keep)
    real = [key for key, tag in zip(batch.keys, batch.tags, strict=True) if not tag.get("is_padding")]
    assert len(real) == 4 and len(dropped) == 4
    assert [sum(key.startswith(g) for key in real) for g in "ab"] == [2, 2]
    assert metrics["rlif/vote/voters_per_prompt"] == 4 and metrics["rlif/vote/trained_per_prompt"] == 2
    assert metrics["rlif/majority_ratio/mean"] == pytest.approx((2 / 4 + 3 / 4) / 2)  # over all 8 voters
    assert metrics["rlif/pseudo_label_acc"] == pytest.approx(0.5)
    # the dropped rows are gone from TransferQueue; the kept ones carry the vote over all voters
    remaining = tq.kv_list(partition_id=PARTITION)[PARTITION]
    assert not set(dropped) & set(remaining)
    index = {f"{uid}6_{i}_0": i for i, uid in enumerate(UIDS)}
    full_vote = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    voted = tq.kv_batch_get(keys=real, partition_id=PARTITION, select_fields=[VOTED_KEY])[VOTED_KEY]
    assert voted.tolist() == [full_vote[index[key]] for key in real]
    # the advantage step trains the kept rows on those rewards (not on a vote among the 2 kept rows)
    metrics = {}
    trainer._compute_advantage(batch, metrics)
    out = fetch(batch, "rm_scores", "response_mask")
    for row, key in enumerate(real):
        assert out["rm_scores"][row, RESPONSE_LENS[index[key]] - 1].item() == full_vote[index[key]]
    assert "rlif/majority_ratio/mean" not in metrics  # logged once, by the voting step
    assert len(batch.keys) == 5  # 4 trained rows padded to verl's multiple, never the 8 voters


def test_changing_ground_truth_changes_no_advantage(transfer_queue):
    results = []
    for acc in ([1.0] * 8, [0.0] * 8):
        batch = put_batch(acc, seed=1)  # same seed: same self-certainty, only ground truth differs
        make_trainer()._compute_advantage(batch, {})
        results.append(fetch(batch, "advantages", "rm_scores"))
    assert torch.equal(results[0]["advantages"], results[1]["advantages"])
    assert torch.equal(results[0]["rm_scores"], results[1]["rm_scores"])


def test_entropy_baseline_reads_verls_entropy_field(transfer_queue):
    acc = [None] * 8
    batch = put_batch(acc, seed=4, with_self_certainty=False)  # no engine of ours: verl's entropy suffices
    config = RLIFConfig.from_mapping({"rewards": ["entropy"], "gdpo": {"weights": [1.0]}})
    metrics = {}
    make_trainer(config)._compute_advantage(batch, metrics)
    out = fetch(batch, "advantages", "rm_scores", "entropy", "response_mask")
    mask = out["response_mask"][:8]
    want = rlif_step(UIDS, KEYS, None, mask, config, token_entropy=out["entropy"][:8], correct=acc)
    for i in range(8):
        assert torch.allclose(out["advantages"][i, : RESPONSE_LENS[i]], want.advantages[i].expand(RESPONSE_LENS[i]))
        mean_entropy = out["entropy"][i, : RESPONSE_LENS[i]].mean()
        assert out["rm_scores"][i, RESPONSE_LENS[i] - 1] == pytest.approx(-mean_entropy.item(), rel=1e-5)
    assert out["advantages"][8:].abs().sum() == 0
    assert metrics["rlif/entropy/mean"] == pytest.approx(want.metrics["rlif/entropy/mean"])
    assert "rlif/self_certainty/mean" not in metrics


def test_missing_self_certainty_names_the_cause(transfer_queue):
    batch = put_batch([None] * 8, seed=2, with_self_certainty=False)
    with pytest.raises(RuntimeError, match="VERL_ENGINE_VENDOR=rlif"):
        make_trainer()._compute_advantage(batch, {})
    assert "VERL_ENGINE_VENDOR" in MISSING_SELF_CERTAINTY


class RecordingWorkerGroup:
    """Stands for the Ray actor worker group: records the flags each pass was asked with."""

    def __init__(self):
        self.calls = []

    def compute_log_prob(self, batch):
        self.calls.append(dict(batch.extra_info))
        lengths = [t["seq_len"] for t in batch.tags]
        full = TensorDict(
            {
                "log_probs": torch.nested.as_nested_tensor([torch.rand(n) for n in lengths], layout=torch.jagged),
                "entropy": torch.nested.as_nested_tensor([torch.rand(n) for n in lengths], layout=torch.jagged),
            },
            batch_size=len(lengths),
        )
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=full)
        return batch


def test_self_certainty_is_requested_in_the_old_log_prob_pass_only(transfer_queue):
    batch = put_batch([None] * 8, seed=3)
    trainer = make_trainer()
    trainer.config = OmegaConf.merge(
        trainer.config,
        {
            "actor_rollout_ref": {
                "actor": {"loss_agg_mode": "token-mean", "loss_scale_factor": None},
                "rollout": {"temperature": 1.0, "calculate_log_probs": False},
            }
        },
    )
    trainer.actor_rollout_wg = RecordingWorkerGroup()
    trainer.ref_in_actor = True
    batch = trainer._compute_old_log_prob(batch, {})
    assert "calculate_self_certainty" not in batch.extra_info  # not left behind for later passes
    trainer._compute_ref_log_prob(batch, {})
    old_pass, ref_pass = trainer.actor_rollout_wg.calls
    assert old_pass["calculate_self_certainty"] is True and old_pass["self_certainty_chunk_size_tokens"] == 1024
    assert ref_pass["calculate_self_certainty"] is False


class DecoupledWorkerGroup(RecordingWorkerGroup):
    """verl's separate_async worker group: weights saved to and restored from CPU slots (DetachActorWorker)."""

    def __init__(self):
        super().__init__()
        self.events = []

    def compute_log_prob(self, batch):
        self.events.append(("compute_log_prob", batch.extra_info.get("calculate_self_certainty")))
        return super().compute_log_prob(batch)

    def __getattr__(self, name):
        if name in ("save_model_to_cpu", "restore_model_from_cpu", "clear_cpu_model"):
            return lambda slot: self.events.append((name, slot))
        raise AttributeError(name)


@pytest.mark.parametrize("local_trigger_step", [0, 1])
def test_separate_async_self_certainty_comes_from_the_same_pi_old(transfer_queue, local_trigger_step):
    """verl's separate_async swaps pi_old (CPU slot 0) in around the old-log-prob pass of a later mini-batch; the
    flag must be on for exactly that pass, i.e. self-certainty is computed with pi_old's weights."""
    batch = put_batch([None] * 8, seed=5 + local_trigger_step)
    trainer = RLIFSeparateAsyncTrainer.__new__(RLIFSeparateAsyncTrainer)
    trainer.config = OmegaConf.create(
        {
            "algorithm": {"rollout_correction": {"bypass_mode": False}},
            "actor_rollout_ref": {
                "actor": {"loss_agg_mode": "token-mean", "loss_scale_factor": None},
                "rollout": {"temperature": 1.0, "calculate_log_probs": False},
            },
        }
    )
    trainer.rlif, trainer.local_trigger_step = RLIFConfig(), local_trigger_step
    trainer.actor_rollout_wg = DecoupledWorkerGroup()
    batch = trainer._compute_old_log_prob(batch, {})
    assert "calculate_self_certainty" not in batch.extra_info
    if local_trigger_step == 0:  # the current weights are pi_old: saved, then used
        assert trainer.actor_rollout_wg.events == [("save_model_to_cpu", 0), ("compute_log_prob", True)]
    else:
        assert trainer.actor_rollout_wg.events == [
            ("save_model_to_cpu", 1),
            ("restore_model_from_cpu", 0),  # pi_old in place ...
            ("compute_log_prob", True),  # ... for the one pass that also computes self-certainty
            ("restore_model_from_cpu", 1),
            ("clear_cpu_model", 1),
        ]


def test_combined_reward_sits_on_the_last_valid_token_even_with_holes():
    from verl_rlif.adapters.trainer import last_token_scores

    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])  # row 1: a tool output in between
    scores = last_token_scores(torch.tensor([2.0, 3.0, 4.0]), mask)
    assert scores.tolist() == [[0, 2, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]]


def build_trainer(mode, *extra):
    from hydra import compose, initialize_config_dir

    from verl_rlif.testing.e2e import CONFIG_DIR

    overrides = [f"trainer.v1.trainer_mode={mode}", "actor_rollout_ref.rollout.name=vllm", *extra]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = compose(config_name="rlif", overrides=overrides)
    return config, get_trainer_cls(mode)(config)


@pytest.mark.parametrize(
    "mode, sampler", [("rlif", "VoteAwareReplayBuffer"), ("rlif_colocate_async", "VoteAwareReplayBufferAsync")]
)
def test_dynamic_sampling_is_verls_custom_sampler_in_the_trainers_own_config(mode, sampler):
    config, trainer = build_trainer(
        mode, "rlif.dynamic_sampling.enable=true", "rlif.dynamic_sampling.max_refills_per_step=3"
    )
    assert type(trainer.replay_buffer).__name__ == sampler  # built by verl's _build_replay_buffer from the hook
    assert trainer.replay_buffer.rlif.dynamic_sampling.max_refills_per_step == 3
    assert trainer.replay_buffer.refill_fn == trainer._add_prompts_to_generate
    assert trainer.config.data.gen_batch_size == 1  # a refill asks for exactly the missing prompts
    assert config.trainer.v1.sampler.custom_sampler.name is None  # the caller's config is untouched


@pytest.mark.parametrize("mode", sorted(TRAINER_MODES))
def test_verl_reads_the_base_mode_from_the_trainers_own_config(mode):
    """The real trainer's ``__init__`` on a composed config (no Ray needed up to the replay buffer): everything verl
    derives from ``trainer.v1.trainer_mode`` follows the base mode, and the caller's config is left as it was."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    extra = []
    if mode == "rlif_separate_async":
        extra = [
            "actor_rollout_ref.rollout.nnodes=1",
            "actor_rollout_ref.rollout.n_gpus_per_node=2",
            "actor_rollout_ref.rollout.checkpoint_engine.backend=nccl",
            "data.train_batch_size=64",
            "actor_rollout_ref.actor.ppo_mini_batch_size=16",
            "trainer.v1.separate_async.parameter_sync_step=4",
        ]
    config, trainer = build_trainer(mode, *extra)
    base_mode = TRAINER_MODES[mode]
    assert config.trainer.v1.trainer_mode == mode  # the caller's config keeps our mode
    assert trainer.config.trainer.v1.trainer_mode == base_mode == trainer.trainer_mode
    assert type(trainer.replay_buffer) is (ReplayBuffer if base_mode == "sync" else ReplayBufferAsync)
    assert trainer.replay_buffer.trainer_config == config.trainer.v1.get(base_mode, {})  # verl's per-mode settings
    assert trainer.parameter_sync_step == (4 if base_mode == "separate_async" else 1)


def put_sessions(prefix: str, sessions: dict[tuple[str, int], list[str]]):
    """Agent-loop outputs keyed ``{uid}_{session}_{index}``; each value lists the answers of a session's outputs in
    order (the last is the final output). A row's lengths and self-certainty depend only on its answer and position
    in its session, so the same final output gets the same values in every batch that holds it."""
    keys, samples, tags, sc = [], [], [], []
    for (uid, session), answers in sessions.items():
        for index, answer in enumerate(answers):
            g = torch.Generator().manual_seed(zlib.crc32(f"{answer}/{session}/{len(answers) - index}".encode()))
            length = 2 + int(torch.randint(0, 4, (1,), generator=g))
            keys.append(f"{prefix}{uid}_{session}_{index}")
            info = {"answer_key": answer, "pred": answer, "has_answer": 1.0, "acc": None}
            samples.append(
                dict(
                    prompts=torch.arange(PROMPT_LEN),
                    responses=torch.arange(length),
                    response_mask=torch.ones(length, dtype=torch.int64),
                    rm_scores=torch.zeros(length),
                    rollout_log_probs=-torch.rand(length, generator=g),
                    old_log_probs=-torch.rand(length, generator=g),
                    uid=f"{prefix}{uid}",
                    extra_fields={"reward_extra_info": info},
                )
            )
            sc.append(torch.rand(PROMPT_LEN + length, generator=g))
            seq = PROMPT_LEN + length
            tags.append({"status": "success", "prompt_len": PROMPT_LEN, "response_len": length, "seq_len": seq})
    fields = tu.list_of_dict_to_tensordict(samples)
    fields["self_certainty"] = torch.nested.as_nested_tensor(sc, layout=torch.jagged)
    return tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=fields, tags=tags)


def test_a_session_votes_once_by_its_final_output(transfer_queue):
    """Two sessions with 3 and 1 outputs train exactly as the same sessions voted once each: the earlier outputs
    (whose answers differ here, so voting them would change the result) take the final output's advantage."""
    multi = {("m", 0): ["4", "9", "5"], ("m", 1): ["5"], ("m", 2): ["6"], ("m", 3): ["5"]}
    multi |= {("n", s): [a] for s, a in enumerate(["1", "2", "2", "2"])}
    single = {session: answers[-1:] for session, answers in multi.items()}
    batches = [put_sessions(prefix, sessions) for prefix, sessions in (("x", multi), ("y", single))]
    for batch in batches:
        make_trainer()._compute_advantage(batch, {})
    got = [dict(zip(b.keys, fetch(b, "advantages")["advantages"][:, 0].tolist(), strict=True)) for b in batches]
    for (uid, session), answers in multi.items():
        once = got[1][f"y{uid}_{session}_0"]
        for index in range(len(answers)):
            assert got[0][f"x{uid}_{session}_{index}"] == pytest.approx(once, abs=1e-6)
    assert len(set(round(v, 5) for v in got[1].values())) > 2  # the vote and self-certainty spread the sessions


def test_session_finals_from_verls_keys():
    from verl_rlif.adapters.sessions import key_uid, session_finals

    final, source = session_finals(["u_0_0", "u_0_2", "u_1_0", "u_0_1", "pad9_0_0"])
    assert final.tolist() == [False, True, True, False, True]
    assert source.tolist() == [1, 1, 2, 1, 4]
    assert [key_uid(k) for k in ["u_0_2", "3f-a9_1_0", "odd"]] == ["u", "3f-a9", "odd"]


def test_rollout_n_is_the_trained_group_size_only_inside_the_block():
    from omegaconf import OmegaConf

    from verl_rlif.adapters.vote_subset import rollout_n

    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"n": 8}}})
    OmegaConf.set_struct(config, True)
    with rollout_n(config, 4):
        assert config.actor_rollout_ref.rollout.n == 4
    assert config.actor_rollout_ref.rollout.n == 8
    with rollout_n(config, None):
        assert config.actor_rollout_ref.rollout.n == 8


def test_voting_on_more_sessions_than_trained_keeps_whole_sessions(transfer_queue):
    """Multi-output sessions with ``trained_per_prompt``: one vote per session (by its final output), the subset
    counts sessions, and each session's outputs are kept or dropped together with the session's vote reward."""
    rlif = RLIFConfig.from_mapping(
        {"rewards": ["vote"], "gdpo": {"weights": [1.0], "whiten": "none"}, "vote": {"trained_per_prompt": 2}}
    )
    trainer = make_trainer(rlif, n=4)
    # group m: finals 5,5,6,4 -> 5 wins (voting every row, 4,4,5,5,6,4, would make 4 win); group n: 2 wins
    sessions = {("m", 0): ["4", "4", "5"], ("m", 1): ["5"], ("m", 2): ["6"], ("m", 3): ["4"]}
    sessions |= {("n", s): [a] for s, a in enumerate(["1", "2", "2", "2"])}
    wins = {"m": "5", "n": "2"}
    kept_multi = 0
    for seed in range(6):
        prefix = f"s{seed}"
        batch = put_sessions(prefix, sessions)
        metrics = {}
        kept = trainer._subset.vote_and_keep(batch, metrics, seed=seed)
        assert metrics["rlif/vote/voters_per_prompt"] == 4 and metrics["rlif/vote/trained_per_prompt"] == 2
        assert metrics["rlif/majority_ratio/mean"] == pytest.approx((2 / 4 + 3 / 4) / 2)  # over the 8 finals
        outputs = {}
        for key in kept.keys:
            uid, session, index = key.removeprefix(prefix).split("_")
            outputs.setdefault((uid, int(session)), []).append(int(index))
        assert all(sorted(idx) == list(range(len(sessions[s]))) for s, idx in outputs.items())  # whole sessions
        assert [sum(uid == g for uid, _ in outputs) for g in "mn"] == [2, 2]
        kept_multi += ("m", 0) in outputs
        voted = tq.kv_batch_get(keys=kept.keys, partition_id=PARTITION, select_fields=[VOTED_KEY])[VOTED_KEY]
        for key, reward in zip(kept.keys, voted.tolist(), strict=True):
            uid, session, _ = key.removeprefix(prefix).split("_")
            assert reward == float(sessions[(uid, int(session))][-1] == wins[uid])  # the session's final vote
        remaining = set(tq.kv_list(partition_id=PARTITION)[PARTITION])
        assert not (set(batch.keys) - set(kept.keys)) & remaining  # dropped sessions are gone, every output
        metrics = {}
        trainer._compute_advantage(kept, metrics)
        assert metrics["rlif/vote/trained_rows"] == len(kept.keys)  # every output of a kept session runs
    assert 0 < kept_multi < 6  # the 3-output session was kept on some seeds and dropped on others


@pytest.mark.parametrize("cls", [RLIFColocateAsyncTrainer, RLIFSeparateAsyncTrainer])
def test_async_trainers_draw_the_subset_in_verls_balance_step(transfer_queue, cls):
    """The real async trainer classes: verl's ``_balance_batch`` (stubbed only at the worker group's dispatch info)
    receives the kept rows, pads them to mini-batches of the trained group size, and each local update of a step
    (``local_trigger_step``, as verl's ``step`` sets it) draws its own seeded subset."""
    from types import SimpleNamespace

    rlif = RLIFConfig.from_mapping({"vote": {"trained_per_prompt": 2}})
    trainer = cls.__new__(cls)
    trainer.config = OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"n": 4}, "actor": {"ppo_mini_batch_size": 3}},
            "trainer": {"critic_warmup": 0},
            "data": {"seed": 7},
        }
    )
    trainer.rlif, trainer._subset = rlif, TrainedSubset(rlif, trainer.config)
    trainer.use_critic, trainer.global_steps = False, 3
    trainer.actor_rollout_wg = SimpleNamespace(_dispatch_info={"actor": [0, 1]})  # 2 data-parallel ranks
    trainer.tokenizer = SimpleNamespace(eos_token_id=0)
    answers = {"p": ["1", "1", "2", "3"], "q": ["4", "4", "4", "5"]}
    for local in (0, 1):
        trainer.local_trigger_step = local
        prefix = f"{cls.base_mode}{local}"
        batch = put_sessions(prefix, {(g, s): [a] for g, row in answers.items() for s, a in enumerate(row)})
        metrics = {}
        out = trainer._balance_batch(batch, metrics)
        real = [key for key, tag in zip(out.keys, out.tags, strict=True) if not tag.get("is_padding")]
        uids = [key.removeprefix(prefix)[0] for key in batch.keys]
        want = select_trained_rows(uids, 2, trainer._subset.seed(3, local)).tolist()
        assert sorted(real) == sorted(batch.keys[i] for i in want)
        assert len(out.keys) == 6  # padded to lcm(2 ranks, 3 prompts x 2 trained rows), not 3 x 4 voters
        assert trainer.config.actor_rollout_ref.rollout.n == 4  # verl reads the trained size only inside
        assert metrics["rlif/vote/voters_per_prompt"] == 4 and metrics["rlif/vote/trained_per_prompt"] == 2
        assert any(key.startswith("global_seqlen") for key in metrics)  # verl's balancing ran on the kept rows
