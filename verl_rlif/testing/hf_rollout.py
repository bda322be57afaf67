"""Rollout ``rlif_hf``: a token-in/token-out server backed by transformers ``generate``, for tests and the CPU demo.

verl 0.9.1 serves rollouts only through vllm/sglang/trtllm servers, none of which runs without CUDA. This is the
same contract with transformers behind it, registered under the name ``rlif_hf``
(``actor_rollout_ref.rollout.name=rlif_hf``) in verl's ``RolloutReplicaRegistry`` and rollout-class table:

* :class:`RLIFHFReplica` (TaskRunner) starts one :class:`RLIFHFServer` Ray actor per replica, named like verl's
  servers, beside the hybrid actor workers it serves;
* :class:`RLIFHFServer` answers ``generate(prompt_ids, sampling_params, request_id)`` with a ``TokenOutput`` (token
  ids, log-probs, stop reason). Concurrent requests are batched (left padding) into one ``generate`` call per
  sampling setting. Log-probs are those of the sampled tokens under the temperature-scaled logits, the quantity
  verl's actor computes; top-k/top-p only restrict sampling;
* :class:`RLIFHFServerAdapter` (in each actor worker) receives the actor's weights from verl's checkpoint engine
  before every rollout and sends them to its server, which loads them by name (as vllm/sglang do).

Sleep and wake-up free nothing (the weights stay resident); text only; one server per replica, no tensor parallelism.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

import ray
import torch
from verl.plugin.platform import get_platform
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput
from verl.workers.rollout.utils import ensure_async_iterator

logger = logging.getLogger(__name__)

NAME = "rlif_hf"
SERVER_PREFIX = f"{NAME}_server_"


def server_name(replica_rank: int) -> str:
    return f"{SERVER_PREFIX}{replica_rank}"


@dataclass(frozen=True)
class SamplingKey:
    """Requests with equal keys are generated in one batch."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    key: SamplingKey
    done: asyncio.Future = field(repr=False)


def sampled_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[...]`` log-probs of ``tokens [...]`` under ``logits [..., V]`` scaled by ``temperature`` (0 = greedy)."""
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def response_length(tokens: list[int], eos_ids: set[int]) -> tuple[int, bool]:
    """Tokens up to and including the first end-of-sequence token, and whether one was found."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return i + 1, True
    return len(tokens), False


class RLIFHFServer:
    """One transformers model answering verl's token-in/token-out ``generate``; a Ray actor (async)."""

    def __init__(self, config, model_config, replica_rank: int, device=None):
        from transformers import AutoModelForCausalLM
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig

        model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.config, self.replica_rank = omega_conf_to_dataclass(config), replica_rank
        self.device = torch.device(device or get_platform().device_name)
        dtype = getattr(torch, config.dtype)
        path = model_config.local_path
        if config.load_format == "dummy":  # like vllm: random weights, the actor's arrive before the first rollout
            self.model = AutoModelForCausalLM.from_config(model_config.hf_config, dtype=dtype)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        self.model.to(self.device).eval()
        torch.manual_seed(self.config.seed + replica_rank)  # this process samples nothing else
        tokenizer = model_config.tokenizer
        generation = model_config.generation_config
        eos = getattr(generation, "eos_token_id", None) if generation is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.global_steps = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None

    # ---- generation -------------------------------------------------------------------------------------------

    async def generate(self, prompt_ids, sampling_params: dict, request_id: str, **unused) -> TokenOutput:
        if unused.get("image_data") or unused.get("video_data") or unused.get("audio_data"):
            raise NotImplementedError(f"rollout {NAME!r} serves text only")
        prompt_ids = [int(t) for t in prompt_ids]
        max_tokens = self._max_tokens(len(prompt_ids), dict(sampling_params))
        key = SamplingKey(
            temperature=float(sampling_params.get("temperature", self.config.temperature)),
            top_p=float(sampling_params.get("top_p", self.config.top_p)),
            top_k=int(sampling_params.get("top_k", self.config.top_k)),
            repetition_penalty=float(sampling_params.get("repetition_penalty", self.config.repetition_penalty)),
        )
        self._ensure_batcher()
        request = _Request(prompt_ids, max_tokens, key, asyncio.get_running_loop().create_future())
        await self._queue.put(request)
        tokens, log_probs, completed = await request.done
        return TokenOutput(
            token_ids=tokens,
            log_probs=log_probs,
            stop_reason="completed" if completed else "length",
            extra_fields={"global_steps": self.global_steps},
        )

    def _ensure_batcher(self) -> None:
        """One batching task per event loop (Ray keeps one; a test may start several)."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve())

    def _max_tokens(self, prompt_len: int, sampling_params: dict) -> int:
        """verl's server rule: the request's limit, else the configured response length, within the context."""
        budget = self.config.prompt_length + self.config.response_length
        room = (self.config.max_model_len or budget) - prompt_len
        if room < 1:
            raise ValueError(f"prompt of {prompt_len} tokens leaves no room to generate")
        limit = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens"))
        if limit is None:
            limit = min(self.config.response_length, budget - prompt_len)
        return max(1, min(int(limit), room))

    async def _serve(self) -> None:
        """Take every waiting request, generate each sampling setting's batch in a thread, answer, repeat."""
        while True:
            pending = [await self._queue.get()]
            while not self._queue.empty() and len(pending) < self.config.max_num_seqs:
                pending.append(self._queue.get_nowait())
            for key in dict.fromkeys(r.key for r in pending):
                batch = [r for r in pending if r.key == key]
                try:
                    results = await asyncio.to_thread(self._generate_batch, batch, key)
                except Exception as exc:  # answer every waiting caller instead of hanging them
                    for r in batch:
                        if not r.done.done():  # a caller may have given up (cancelled) meanwhile
                            r.done.set_exception(exc)
                    continue
                for r, result in zip(batch, results, strict=True):
                    if not r.done.done():
                        r.done.set_result(result)

    @torch.no_grad()
    def _generate_batch(self, batch: list[_Request], key: SamplingKey) -> list[tuple[list[int], list[float], bool]]:
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention_mask[i, width - len(r.prompt_ids) :] = 1
        greedy = key.temperature <= 0
        out = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            max_new_tokens=max(r.max_tokens for r in batch),
            do_sample=not greedy,
            temperature=None if greedy else key.temperature,
            top_p=None if greedy else key.top_p,
            top_k=None if greedy or key.top_k <= 0 else key.top_k,
            repetition_penalty=key.repetition_penalty,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new_tokens = out.sequences[:, width:]
        log_probs = torch.stack(  # step by step: never a [B, T, V] tensor
            [sampled_log_probs(step, new_tokens[:, t], key.temperature) for t, step in enumerate(out.logits)], dim=1
        ).cpu()
        new_tokens = new_tokens.cpu()
        results = []
        for i, r in enumerate(batch):
            tokens = new_tokens[i, : r.max_tokens].tolist()
            length, completed = response_length(tokens, self.eos_ids)
            results.append((tokens[:length], log_probs[i, :length].tolist(), completed))
        return results

    # ---- weights and lifecycle (verl's server interface) ------------------------------------------------------

    def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: int | None = None) -> None:
        """Load the actor's weights by name; every name must be one of the model's parameters or buffers."""
        state = self.model.state_dict()
        unknown = sorted(set(named_tensors) - set(state))
        if unknown:
            raise KeyError(f"weights not in the rollout model: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
        with torch.no_grad():
            for name, tensor in named_tensors.items():
                state[name].copy_(tensor.to(state[name].dtype))
        if global_steps is not None:
            self.global_steps = global_steps

    def get_server_address(self) -> str:
        return server_name(self.replica_rank)

    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None  # transformers keeps no cache between generate calls

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False, **unused) -> dict:
        return {"aborted_count": 0, "request_ids": []}  # sync training drains every request before a weight sync

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


class RLIFHFReplica(RolloutReplica):
    """Starts the :class:`RLIFHFServer` of one replica next to the hybrid actor workers it serves."""

    async def launch_servers(self):
        # the adapter in the actor workers finds its server by replica rank alone: a second server family (reward
        # or teacher model, or a name suffix) would collide with the policy's server names
        if self.is_reward_model or self.is_teacher_model or self.name_suffix:
            raise NotImplementedError(
                f"rollout {NAME!r} serves the policy only (hybrid mode), not a reward or teacher model "
                f"(is_reward_model={self.is_reward_model}, is_teacher_model={self.is_teacher_model}, "
                f"name_suffix={self.name_suffix!r}); use vllm or sglang for those"
            )
        if self.nnodes != 1:
            raise NotImplementedError(f"rollout {NAME!r} runs one server per replica on one node")
        accelerator = get_platform().ray_resource_name()
        infos = await asyncio.gather(
            *[
                worker.__ray_call__.remote(
                    lambda self: (
                        ray.get_runtime_context().get_node_id(),
                        ",".join(ray.get_runtime_context().get_accelerator_ids().get(accelerator, [])),
                    )
                )
                for worker in self.workers
            ]
        )
        node_id = infos[0][0]
        # like verl's vllm server: Ray leaves the visible devices alone and the server sees its workers' devices,
        # set before the process starts, so before anything can initialise the device runtime
        env_vars = {var: "1" for var in get_platform().ray_noset_envvars()}
        devices = ",".join(d for _, d in infos if d)
        if devices:
            env_vars[get_platform().visible_devices_envvar()] = devices
        name = server_name(self.replica_rank)
        server = (
            ray.remote(RLIFHFServer)
            .options(
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
                runtime_env={"env_vars": env_vars},
                name=name,
                num_cpus=0,
                max_concurrency=self.max_concurrency,
            )
            .remote(self.config, self.model_config, self.replica_rank)
        )
        self.servers = [server]
        # verl's LLMServerManager reads these private attributes, not the public properties (see
        # docs/how-it-plugs-into-verl.md §3; pinned by tests/adapters/test_verl_contract.py)
        self._server_handle = server
        self._server_address = await server.get_server_address.remote()


class RLIFHFServerAdapter(BaseRollout):
    """In each hybrid actor worker: hands the actor's weights to this replica's server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        world = self.config.tensor_model_parallel_size * self.config.data_parallel_size
        world *= self.config.pipeline_model_parallel_size
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader_rank = rank % world == 0
        self._server = None

    @property
    def server(self):
        if self._server is None:  # the server starts after the actor workers
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def update_weights(self, weights, wire_format: str = "named_tensors", global_steps=None, **kwargs):
        if wire_format != "named_tensors":
            raise NotImplementedError(f"rollout {NAME!r} takes full tensors, not {wire_format!r}")
        # every rank runs the generator (it may gather shards collectively); the leader sends
        named = {}
        async for name, tensor in ensure_async_iterator(weights):
            if self.is_leader_rank:
                named[name] = tensor.detach().to("cpu", copy=True)
        if self.is_leader_rank:
            await self.server.update_weights.remote(named, global_steps)

    async def resume(self, tags: list[str]):
        if self.is_leader_rank:
            await self.server.wake_up.remote(tags=tags)

    async def release(self):
        if self.is_leader_rank:
            await self.server.sleep.remote()


RolloutReplicaRegistry.register(NAME, lambda: RLIFHFReplica)
rollout_base._ROLLOUT_REGISTRY[(NAME, "async")] = f"{__name__}.RLIFHFServerAdapter"
