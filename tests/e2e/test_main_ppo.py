"""verl's real ``python -m verl.trainer.main_ppo`` with verl-rlif switched on by config: 2 steps, then a resume.

CPU (CI): a tiny Llama built offline, the CPU platform and transformers rollout from ``verl_rlif.testing``,
``configs/rlif.yaml`` + ``configs/demo/cpu.yaml``. The first run goes through ``verl-rlif demo`` (what
``make demo`` runs, with the tiny model instead of SmolLM2), the resume through the same ``main_ppo`` command.
The same run on a GPU (FSDP, and Megatron at TP=1) is marked ``gpu``. Each assertion reads verl's own JSONL
metrics or checkpoint directory, i.e. what reached the trainer.

The learning rate is high on purpose: the actor visibly changes every step, so rollout log-probs that still match
the actor's prove the rollout server received the new weights (and, after the resume, the restored ones).
"""

import contextlib
import io
import math
import os

import pytest

from verl_rlif.cli import main
from verl_rlif.testing.cpu_demo import prepare_demo
from verl_rlif.testing.e2e import finite, read_metrics, run_main_ppo
from verl_rlif.testing.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow

TIMEOUT_S = 600
SMALL_RUN = [
    "data.train_batch_size=4",
    "data.max_response_length=16",
    "actor_rollout_ref.rollout.n=8",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",  # 2 updates per step: the second has a log-ratio for KL-Cov
    "actor_rollout_ref.actor.optim.lr=1e-3",
    "rlif.extractor.default=boxed",
    "trainer.save_freq=2",
]


def run_twice(tmp, device="cpu", config_name="rlif"):
    """``verl-rlif demo``: 2 steps with a checkpoint at step 2; then the same command asked for 3 steps: it resumes.
    ``rlif_megatron`` gets its engine overrides from the demo's preparation (cpu_demo.ENGINE_OVERRIDES)."""
    model = build_tiny_model(os.path.join(tmp, "model"))
    output_dir, overrides = os.path.join(tmp, "run"), SMALL_RUN
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                "demo",
                "--model-path",
                model,
                "--steps",
                "2",
                "--output-dir",
                output_dir,
                "--device",
                device,
                f"--config-name={config_name}",
                f"--timeout-s={TIMEOUT_S}",
                *overrides,
            ]
        )
    run = prepare_demo(3, output_dir, model, device, overrides, config_name)
    first = read_metrics(run.metrics_path)
    assert code == 0, _tail(os.path.join(output_dir, "main_ppo.log"))
    log = os.path.join(tmp, "resumed.log")
    code = run_main_ppo(run, log, timeout_s=TIMEOUT_S)
    assert code == 0, _tail(log)
    return run, printed.getvalue(), first, read_metrics(run.metrics_path)


def _tail(log: str, lines: int = 60) -> str:
    with open(log, encoding="utf-8") as f:
        return "main_ppo failed; last output:\n" + "".join(f.readlines()[-lines:])


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    return run_twice(str(tmp_path_factory.mktemp("e2e_cpu")))


def assert_healthy_steps(steps: list[dict], probs_tolerance: float = 1e-3) -> None:
    """What every RLIF step must show: self-certainty from the actor, a live vote, GDPO advantages, KL-Cov."""
    for m in steps:
        assert m["rlif/self_certainty/mean"] > 0 and m["rlif/self_certainty/std"] > 0  # from the engine, per response
        assert m["rlif/zero_variance_groups/self_certainty"] < 1
        assert finite(m["actor/pg_loss"]) and finite(m["actor/grad_norm"]) and m["actor/grad_norm"] > 0
        assert m["critic/advantages/max"] - m["critic/advantages/min"] > 0.5  # GDPO spreads responses apart
        assert abs(m["critic/advantages/mean"]) < 0.5  # whitened over the batch
        assert m["rlif/kl_cov/selected_fraction"] > 0  # KL-Cov selected tokens (at least one by construction)
        assert m["rlif/kl_cov/selected_abs_log_ratio"] > 0  # and penalised a real log-ratio (the second update)
        assert m["rlif/answer_rate/mean"] > 0
        # the rollout server generated with the actor's current weights (high lr: stale weights would differ)
        assert m["training/rollout_probs_diff_max"] < probs_tolerance
        assert 0 <= m["rlif/ground_truth_acc"] <= 1  # ground truth reached the monitors (not the rewards)
        assert 0 <= m["rlif/vote_reward/mean"] <= 1 and 0 < m["rlif/majority_ratio/mean"] <= 1


def assert_vote_alive(steps: list[dict]) -> None:
    """Some group disagreed, so the vote rewarded some responses and not others (the fresh model's answers vary;
    after a few steps at this learning rate a group may agree completely, so this is checked before training)."""
    assert any(m["rlif/vote_reward/std"] > 0 for m in steps)
    assert min(m["rlif/zero_variance_groups/vote"] for m in steps) < 1


def test_two_steps_through_main_ppo(cpu_runs):
    run, printed, first, _ = cpu_runs
    assert [m["step"] for m in first] == [1, 2]
    assert_healthy_steps(first)
    assert_vote_alive(first[:1])
    assert all(m["rlif/vote/voters_per_prompt"] == m["rlif/vote/trained_per_prompt"] == 8 for m in first)
    assert all(m["rlif/vote/trained_rows"] == 32 for m in first)  # 4 prompts x 8 responses
    # the demo showed verl's progress and our metrics for each step, and drew the monitors
    assert "Training Progress" in printed and "step 2: vote reward" in printed
    assert os.path.getsize(os.path.join(run.output_dir, "collapse_monitors.png")) > 10_000
    assert os.path.isfile(os.path.join(run.hydra_dir, ".hydra", "config.yaml"))  # Hydra wrote there, not into ./


def test_voting_on_more_responses_than_trained(tmp_path):
    # 8 responses per prompt vote, 4 per prompt train (TTRL's 64/32 in small): 4 prompts -> 16 trained rows
    model = build_tiny_model(os.path.join(tmp_path, "model"))
    no_checkpoint = [o for o in SMALL_RUN if not o.startswith("trainer.save_freq=")] + ["trainer.save_freq=-1"]
    overrides = [*no_checkpoint, "rlif.vote.trained_per_prompt=4"]
    run = prepare_demo(2, os.path.join(tmp_path, "run"), model, "cpu", overrides, "rlif")
    log = os.path.join(tmp_path, "main_ppo.log")
    assert run_main_ppo(run, log, timeout_s=TIMEOUT_S) == 0, _tail(log)
    steps = read_metrics(run.metrics_path)
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["rlif/vote/voters_per_prompt"] == 8 and m["rlif/vote/trained_per_prompt"] == 4
        assert m["rlif/vote/trained_rows"] == 16
        assert finite(m["actor/pg_loss"]) and m["actor/grad_norm"] > 0
        assert m["rlif/self_certainty/std"] > 0  # computed on the kept rows
        assert 0 < m["rlif/majority_ratio/mean"] <= 1


def test_checkpoint_saved_and_training_resumes(cpu_runs):
    run, _, _, resumed = cpu_runs
    with open(os.path.join(run.checkpoint_dir, "latest_checkpointed_iteration.txt")) as f:
        assert f.read().strip() == "3"  # the resumed run saved its own final step too
    assert os.path.isdir(os.path.join(run.checkpoint_dir, "global_step_2", "actor"))
    assert [m["step"] for m in resumed] == [3]  # started after the checkpoint, not from scratch
    assert_healthy_steps(resumed)
    assert math.isfinite(resumed[0]["actor/entropy"])


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["fsdp", "megatron"])
def test_two_steps_on_cuda(tmp_path, engine):
    if engine == "megatron":
        # verl 0.9.1's Megatron engine builds its model through Megatron-Bridge (or, with vanilla_mbridge, through
        # mbridge with Transformer Engine layers): megatron-core alone is not enough
        pytest.importorskip("megatron.bridge", reason="verl's Megatron engine needs Megatron-Bridge")
        _, _, first, resumed = run_twice(str(tmp_path), "cuda", "rlif_megatron")
    else:
        _, _, first, resumed = run_twice(str(tmp_path), "cuda")
    assert [m["step"] for m in first + resumed] == [1, 2, 3]
    # Megatron may compute in bf16 against the fp32 rollout; without weight sync the gap is ~0.9 (measured on CPU)
    assert_healthy_steps(first + resumed, probs_tolerance=0.1 if engine == "megatron" else 1e-3)
    assert_vote_alive(first[:1])
    for m in first + resumed:
        timings = ", ".join(f"{k}={v:.2f}" for k, v in m.items() if k.startswith("timing_s/"))
        print(f"{engine} step {m['step']}: {timings}")
