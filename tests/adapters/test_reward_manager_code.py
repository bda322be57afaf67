"""Reward manager ``rlif`` with the ``code`` extractor: inputs from ``extra_info``, programs run in the sandbox,
concurrent ``run_single`` calls, and fail-closed start-up when the required isolation is missing."""

import asyncio
import json

import numpy as np
import pytest
import torch
from offline_tokenizer import build_tokenizer
from omegaconf import OmegaConf
from verl import DataProto

from verl_rlif import sandbox
from verl_rlif.adapters.reward_manager import RLIFRewardManager
from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.executor import SandboxUnavailable

RESPONSE_LEN = 256
SANDBOX = {"workers": 2, "timeout_per_input_s": 1.0, "memory_limit_mb": 256, "use_namespaces": False}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def manager(tokenizer):
    config = OmegaConf.create({"rlif": {"extractor": {"by_data_source": {"apps": "code"}}, "sandbox": SANDBOX}})
    try:
        yield RLIFRewardManager(config, tokenizer)
    except SandboxUnavailable as error:
        pytest.skip(f"sandbox layers missing here: {error}")
    finally:
        sandbox.shutdown()
        sandbox.configure(SandboxConfig())


def code_sample(tokenizer, program: str, extra_info: dict, ground_truth=None) -> DataProto:
    ids = tokenizer.encode(f"```python\n{program}\n```")
    assert len(ids) <= RESPONSE_LEN
    responses = torch.full((1, RESPONSE_LEN), tokenizer.pad_token_id)
    responses[0, : len(ids)] = torch.tensor(ids)
    prompt = torch.tensor([tokenizer.encode("Q:")])
    mask = torch.zeros(1, prompt.shape[1] + RESPONSE_LEN, dtype=torch.long)
    mask[0, : prompt.shape[1] + len(ids)] = 1
    non_tensor = {"data_source": np.array(["apps"], dtype=object), "extra_info": np.array([extra_info], dtype=object)}
    if ground_truth is not None:
        non_tensor["reward_model"] = np.array([{"ground_truth": ground_truth}], dtype=object)
    return DataProto.from_dict(
        tensors={"prompts": prompt, "responses": responses, "attention_mask": mask}, non_tensors=non_tensor
    )


def test_programs_are_keyed_by_behaviour(manager, tokenizer):
    info = {"inputs": ["1 2", "3 4"]}
    truth = json.dumps({"inputs": info["inputs"], "outputs": ["3", "7"]})
    programs = ["a, b = map(int, input().split())\nprint(a + b)", "print(sum(map(int, input().split())))"]
    programs += ["print(3)", "import os\nos.fork()"]

    async def score_all():  # as verl's reward loop does: many run_single coroutines at once
        samples = [code_sample(tokenizer, p, info, truth) for p in programs]
        return await asyncio.gather(*(manager.run_single(s) for s in samples))

    out = [r["reward_extra_info"] for r in manager.loop.run_until_complete(score_all())]
    assert out[0]["answer_key"] == out[1]["answer_key"] != out[2]["answer_key"]
    assert out[0]["answer_key"].startswith("code:")
    assert [o["has_answer"] for o in out] == [1.0, 1.0, 1.0, 0.0]  # the fork attempt fails on every input
    assert [o["acc"] for o in out] == [1.0, 1.0, 0.0, 0.0]  # monitoring: expected outputs never reach the key
    assert all(r["reward_score"] == 0.0 for r in manager.loop.run_until_complete(score_all()))


def test_missing_isolation_refuses_at_start(tokenizer):
    config = OmegaConf.create(
        {"rlif": {"extractor": {"default": "code"}, "sandbox": {**SANDBOX, "required_layers": ["namespaces"]}}}
    )
    try:
        with pytest.raises(SandboxUnavailable, match="namespaces"):
            RLIFRewardManager(config, tokenizer)
    finally:
        sandbox.shutdown()
        sandbox.configure(SandboxConfig())
