"""The small pieces of the test-support package: data set, CPU platform, demo summary."""

import pandas as pd
import pytest
import torch

from verl_rlif.testing import cpu_platform
from verl_rlif.testing.cpu_demo import step_summary
from verl_rlif.testing.data import arithmetic_problems, write_arithmetic_parquet


def test_arithmetic_problems_are_distinct_and_right():
    problems = arithmetic_problems(100, seed=3)
    assert len({q for q, _ in problems}) == 100
    for question, answer in problems:
        a, op, b = question.removeprefix("What is ").removesuffix("?").split()
        assert int(answer) == (int(a) + int(b) if op == "+" else int(a) * int(b))
    with pytest.raises(ValueError, match="only 162 distinct problems"):
        arithmetic_problems(163)


def test_parquet_has_verls_layout_and_disjoint_splits(tmp_path):
    train, val = write_arithmetic_parquet(str(tmp_path), train=10, val=3)
    train_df, val_df = pd.read_parquet(train), pd.read_parquet(val)
    assert (len(train_df), len(val_df)) == (10, 3)
    row = train_df.iloc[0]
    assert row["prompt"][0]["role"] == "user" and "\\boxed{}" in row["prompt"][0]["content"]
    assert row["reward_model"]["ground_truth"].isdigit() and row["data_source"] == "rlif_arithmetic"
    questions = lambda df: {p[0]["content"] for p in df["prompt"]}  # noqa: E731
    assert not questions(train_df) & questions(val_df)


def test_cpu_platform_answers_what_verl_asks():
    platform = cpu_platform.RLIFCPUPlatform()
    assert (platform.device_name, platform.communication_backend_name(), platform.ray_resource_name()) == (
        "cpu",
        "gloo",
        "GPU",
    )
    assert torch.zeros(1).to(platform.current_device()).device.type == "cpu"  # an int would mean cuda:<int>
    module = platform.device_module
    module.empty_cache(), module.synchronize(), module.set_device(0)
    state = module.get_rng_state()
    first = torch.rand(1)
    module.set_rng_state(state)
    assert torch.equal(torch.rand(1), first)
    assert not platform.is_platform_available(use_smi_check=True)  # never auto-detected


def test_process_group_is_started_only_in_verl_cpu_workers(monkeypatch):
    monkeypatch.delenv("WG_BACKEND", raising=False)
    monkeypatch.setenv("VERL_PLATFORM", "rlif_cpu")
    assert cpu_platform.init_worker_process_group() is False  # not a verl worker (driver, TaskRunner, tests)
    monkeypatch.setenv("WG_BACKEND", "ray")
    monkeypatch.setenv("VERL_PLATFORM", "nvidia")
    assert cpu_platform.init_worker_process_group() is False  # a GPU run: verl starts nccl itself


def test_step_summary_names_the_rlif_monitors():
    line = step_summary({"step": 3, "rlif/vote_reward/mean": 0.625, "rlif/ground_truth_acc": 0.25, "other": 1})
    assert line == "step 3: vote reward 0.625, ground-truth acc 0.25"
