"""Trainer mode ``rlif`` on a real TransferQueue (Ray on CPU): the advantage step and the self-certainty flag.

The batch is put into TransferQueue the way verl's v1 agent loop and actor put it (nested fields, answer keys
inside ``extra_fields``, verl's own balancing padding). The trainer is built with ``__new__`` because its
``__init__`` starts worker groups; the narrowest boundary stubbed is the actor worker group's
``compute_log_prob`` (a Ray call), which writes what our engine returns.
"""

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.trainer.ppo.v1 import get_trainer_cls  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from verl_rlif.adapters.trainer import MISSING_SELF_CERTAINTY, RLIFTrainer  # noqa: E402
from verl_rlif.adapters.vote_subset import VOTED_KEY, TrainedSubset  # noqa: E402
from verl_rlif.config import RLIFConfig  # noqa: E402
from verl_rlif.core.step import rlif_step  # noqa: E402

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


def test_combined_reward_sits_on_the_last_valid_token_even_with_holes():
    from verl_rlif.adapters.trainer import last_token_scores

    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])  # row 1: a tool output in between
    scores = last_token_scores(torch.tensor([2.0, 3.0, 4.0]), mask)
    assert scores.tolist() == [[0, 2, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]]


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
