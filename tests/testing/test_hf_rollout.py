"""The transformers rollout server, without Ray: batching, log-probs, stop rules and weight updates.

A small random Llama and a tokenizer trained offline (no hub). The server object is the one Ray runs; here its
async ``generate`` is awaited directly, several requests at once, as verl's agent loop sends them.
"""

import asyncio

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from verl.workers.config import HFModelConfig, RolloutConfig

from verl_rlif.testing.hf_rollout import RLIFHFReplica, RLIFHFServer, response_length, sampled_log_probs
from verl_rlif.testing.tiny_model import build_tokenizer

CORPUS = ["<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\nThe answer is \\boxed{7}.<|im_end|>"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny_random"))
    tokenizer = build_tokenizer(CORPUS * 10, vocab_size=300)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_server(model_dir, **rollout):
    config = RolloutConfig(name="rlif_hf", dtype="float32", load_format="auto", prompt_length=16, response_length=8)
    for key, value in rollout.items():
        setattr(config, key, value)
    return RLIFHFServer(config, HFModelConfig(path=model_dir), replica_rank=0, device="cpu")


async def generate_many(server, prompts, **sampling):
    calls = [server.generate(p, dict(sampling), request_id=str(i)) for i, p in enumerate(prompts)]
    return await asyncio.gather(*calls)


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]


def test_log_probs_are_the_models_under_the_temperature(model_dir):
    server = make_server(model_dir)
    outputs = asyncio.run(generate_many(server, PROMPTS, temperature=0.7, logprobs=True))
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        assert 1 <= len(out.token_ids) <= 8 and len(out.log_probs) == len(out.token_ids)
        ids = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():  # each sequence alone, no padding: what verl's actor computes
            logits = server.model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        want = torch.log_softmax(logits / 0.7, -1).gather(-1, torch.tensor(out.token_ids)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(out.log_probs), want, atol=1e-4)
        assert out.stop_reason == ("completed" if out.token_ids[-1] in server.eos_ids else "length")
        assert out.extra_fields["global_steps"] is None


def test_requests_are_limited_by_max_tokens_and_context(model_dir):
    server = make_server(model_dir, max_model_len=10)
    (short,) = asyncio.run(generate_many(server, [[5, 6, 7]], temperature=1.0, max_tokens=2))
    assert len(short.token_ids) <= 2
    (long_prompt,) = asyncio.run(generate_many(server, [list(range(5, 14))], temperature=1.0))
    assert len(long_prompt.token_ids) == 1  # 9 prompt tokens in a 10-token context
    with pytest.raises(ValueError, match="no room"):
        asyncio.run(generate_many(server, [list(range(5, 16))], temperature=1.0))


def test_update_weights_loads_by_name_and_refuses_unknown_names(model_dir):
    server = make_server(model_dir)
    greedy = lambda: asyncio.run(generate_many(server, PROMPTS, temperature=0))  # noqa: E731
    before = [o.token_ids for o in greedy()]
    assert before == [o.token_ids for o in greedy()]  # greedy is deterministic
    new = {
        name: torch.randn_like(p) for name, p in server.model.state_dict().items() if name.endswith("lm_head.weight")
    }
    server.update_weights(new, global_steps=7)
    assert torch.equal(server.model.lm_head.weight, new["lm_head.weight"])
    outputs = greedy()
    assert [o.token_ids for o in outputs] != before and outputs[0].extra_fields["global_steps"] == 7
    with pytest.raises(KeyError, match="not in the rollout model"):
        server.update_weights({"model.no_such_layer.weight": torch.zeros(1)})


def test_stop_rule_and_sampled_log_probs():
    assert response_length([4, 9, 2, 9], eos_ids={2}) == (3, True)
    assert response_length([4, 9], eos_ids={2}) == (2, False)
    logits = torch.tensor([[[0.0, 1.0, 2.0]]])
    got = sampled_log_probs(logits, torch.tensor([[2]]), temperature=0.5)
    assert got.item() == pytest.approx(torch.log_softmax(logits[0, 0] / 0.5, -1)[2].item())
    assert sampled_log_probs(logits, torch.tensor([[2]]), temperature=0).item() == pytest.approx(
        torch.log_softmax(logits[0, 0], -1)[2].item()
    )


@pytest.mark.parametrize(
    "role", [{"is_reward_model": True}, {"is_teacher_model": True}, {"name_suffix": "critic"}], ids=str
)
def test_replica_refuses_to_serve_anything_but_the_policy(role):
    """Server names carry the replica rank only: a reward/teacher replica would collide with the policy's server."""
    config = RolloutConfig(name="rlif_hf", tensor_model_parallel_size=1, data_parallel_size=1)
    replica = RLIFHFReplica(replica_rank=0, config=config, model_config=None, gpus_per_node=1, **role)
    with pytest.raises(NotImplementedError, match="policy only"):
        asyncio.run(replica.launch_servers())  # before any Ray call: no cluster runs here
