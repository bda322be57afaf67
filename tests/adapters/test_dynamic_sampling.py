"""Vote-aware dynamic sampling: verl's real replay buffers with our filter, on a real TransferQueue (Ray on CPU).

The agent loop is the one stand-in: ``refill_fn`` (verl's trainer hook that submits prompts for generation) writes
finished groups straight into TransferQueue in verl's layout (prompt tag ``{uid}``, trajectories
``{uid}_{session}_0`` with the reward manager's answer key in ``extra_fields``).
"""

import itertools

import pytest
import torch
from omegaconf import OmegaConf

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from verl.utils import tensordict_utils as tu  # noqa: E402

from verl_rlif.adapters.dynamic_sampling import VoteAwareReplayBuffer, VoteAwareReplayBufferAsync  # noqa: E402

PARTITION = "train"
FLAT, MIXED = ["7", "7", "7"], ["7", "8", "7"]


@pytest.fixture(scope="module")
def transfer_queue():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    ray.shutdown()


class Rollout:
    """Finishes each submitted prompt at once with the next answers of ``plan``."""

    def __init__(self, plan, prefix):
        self.plan, self.ids, self.submitted = iter(plan), (f"{prefix}{i}" for i in itertools.count()), []

    def __call__(self, num_prompts: int) -> int:
        for _ in range(num_prompts):
            uid, answers = next(self.ids), next(self.plan)
            self.submitted.append(uid)
            # a session is an answer, or a list of answers: a multi-output agent session (the last is its final)
            outputs = [
                (s, i, a) for s, out in enumerate(answers) for i, a in enumerate([out] if isinstance(out, str) else out)
            ]
            keys = [f"{uid}_{s}_{i}" for s, i, _ in outputs]
            samples = [
                {
                    "responses": torch.arange(3),
                    "extra_fields": {"reward_extra_info": {"answer_key": a, "acc": None}},
                    "uid": uid,
                }
                for _, _, a in outputs
            ]
            tags = [{"status": "success", "global_steps": 1} for _ in outputs]
            tq.kv_batch_put(keys=keys, partition_id=PARTITION, fields=tu.list_of_dict_to_tensordict(samples), tags=tags)
            tq.kv_put(key=uid, partition_id=PARTITION, tag={"is_prompt": True, "status": "finished", "global_steps": 1})
        return num_prompts


def make_buffer(cls, rollout, cap=4):
    rlif = {"dynamic_sampling": {"enable": True, "max_refills_per_step": cap}}
    kwargs = dict(
        trainer_mode="sync" if cls is VoteAwareReplayBuffer else "colocate_async",
        trainer_config={},
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs=OmegaConf.create({"rlif": rlif}),
        refill_fn=rollout,
        poll_interval=0.01,
    )
    return cls(**kwargs)


def sample(buffer, rollout, batch_size):
    rollout(batch_size)  # what the trainer's prepare_step submits
    batch, metrics = buffer.sample(global_steps=1, partition_id=PARTITION, batch_size=batch_size)
    groups = {key.split("_")[0] for key in batch.keys}
    return batch, groups, metrics


@pytest.mark.parametrize("cls", [VoteAwareReplayBuffer, VoteAwareReplayBufferAsync])
def test_flat_groups_are_dropped_and_refilled(transfer_queue, cls):
    rollout = Rollout([MIXED, FLAT, FLAT, MIXED, FLAT, MIXED], prefix=f"r{cls.__name__[-5:]}")
    batch, groups, metrics = sample(make_buffer(cls, rollout), rollout, 3)
    # round 1: r0 kept, r1 r2 dropped; round 2 asks for 2: r3 kept, r4 dropped; round 3 asks for 1: r5 kept
    assert groups == {rollout.submitted[i] for i in (0, 3, 5)} and len(batch.keys) == 9
    assert metrics["rlif/dynamic_sampling/refills"] == 2
    assert metrics["rlif/dynamic_sampling/prompts_consumed"] == 6
    assert metrics["rlif/dynamic_sampling/filtered_fraction"] == pytest.approx(3 / 6)
    assert metrics["rlif/dynamic_sampling/capped"] == 0.0
    left = tq.kv_list(PARTITION).get(PARTITION, {})
    assert not any(key.split("_")[0] in {rollout.submitted[i] for i in (1, 2, 4)} for key in left)  # cleared


def test_the_cap_trains_on_what_it_has(transfer_queue):
    rollout = Rollout([MIXED, FLAT, FLAT, FLAT, FLAT], prefix="c")
    batch, groups, metrics = sample(make_buffer(VoteAwareReplayBuffer, rollout, cap=2), rollout, 2)
    assert groups == {rollout.submitted[0]}  # one informative group; 2 refill rounds found no other
    assert len(rollout.submitted) == 4  # 2 + 1 + 1 prompts: the cap stopped the refills
    assert metrics["rlif/dynamic_sampling/refills"] == 2 and metrics["rlif/dynamic_sampling/capped"] == 1.0
    assert metrics["rlif/dynamic_sampling/trained_groups"] == 1


def test_a_step_with_nothing_informative_trains_on_its_last_round(transfer_queue):
    rollout = Rollout([FLAT] * 4, prefix="n")
    batch, groups, metrics = sample(make_buffer(VoteAwareReplayBuffer, rollout, cap=1), rollout, 2)
    assert groups == set(rollout.submitted[2:])  # round 1's flat groups dropped; at the cap round 2's are kept
    assert metrics["rlif/dynamic_sampling/capped"] == 1.0 and metrics["rlif/dynamic_sampling/trained_groups"] == 2
    assert metrics["rlif/dynamic_sampling/filtered_fraction"] == pytest.approx(2 / 4)


def test_sessions_are_judged_by_their_final_output(transfer_queue):
    # group 0: finals all "7" although earlier outputs differ -> flat; group 1: finals differ -> kept
    rollout = Rollout([[["1", "7"], "7", ["2", "3", "7"]], [["7", "7"], "8", "7"]], prefix="s")
    batch, groups, metrics = sample(make_buffer(VoteAwareReplayBuffer, rollout, cap=0), rollout, 2)
    assert groups == {rollout.submitted[1]} and len(batch.keys) == 4
    assert metrics["rlif/dynamic_sampling/filtered_fraction"] == pytest.approx(1 / 2)
