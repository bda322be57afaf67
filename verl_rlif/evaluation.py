"""``verl-rlif eval``: score a checkpoint (or a model) with verl's own validation, nothing else.

It is ``python -m verl.trainer.main_ppo`` on the experiment's config with ``trainer.val_only=true``: verl loads
the checkpoint (``trainer.resume_mode=resume_path``) or the model, generates ``val_kwargs.n`` responses per
validation prompt, scores them with the config's reward manager, logs ``val-core/<data_source>/acc/mean@N``
(pass@1), ``.../acc/maj@N/mean`` and ``.../acc/best@N/mean``, and exits without training. The config is checked
first exactly as ``verl-rlif check`` does. docs/replication.md shows the equivalent command line.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from verl_rlif import docs_url, launch
from verl_rlif.configs import resolve_config_dir

FSDP_SHARD = re.compile(r"model_world_size_(\d+)_rank_\d+\.pt")
"""verl's FSDP checkpoint: one shard per rank, ``actor/model_world_size_{W}_rank_{r}.pt``."""


@dataclass(frozen=True)
class EvalRequest:
    config_path: str | None
    """A config directory or ``pkg://`` path; None: the packaged configs."""
    config_name: str
    checkpoint: str | None = None
    """A ``.../global_step_N`` folder written by verl (holds ``actor/``)."""
    model: str | None = None
    """A Hugging Face model directory or hub id: the model before RL, or exported weights."""
    val_files: tuple[str, ...] = ()
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    dump_dir: str | None = None
    overrides: tuple[str, ...] = ()


def _hydra_list(values: tuple[str, ...]) -> str:
    return "[" + ",".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


def eval_overrides(request: EvalRequest) -> list[str]:
    """The Hydra overrides that turn a training config into a validation-only run.

    Raises:
        ValueError: neither or both of checkpoint/model, a checkpoint folder verl would not accept, bad sampling.
    """
    if (request.checkpoint is None) == (request.model is None):
        raise ValueError("give exactly one of --checkpoint (a global_step_N folder) or --model")
    overrides = ["trainer.val_only=true", "trainer.val_before_train=true"]
    if request.checkpoint is not None:
        folder = os.path.abspath(os.path.expanduser(request.checkpoint))
        if not os.path.isdir(folder):
            raise ValueError(f"--checkpoint {request.checkpoint!r} does not exist (or is not a folder)")
        if "global_step_" not in os.path.basename(folder.rstrip("/")):
            raise ValueError(f"--checkpoint {request.checkpoint!r}: verl needs the global_step_N folder itself")
        if not os.path.isdir(os.path.join(folder, "actor")):
            raise ValueError(f"--checkpoint {request.checkpoint!r}: no actor/ folder in it (not a verl checkpoint?)")
        overrides += ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={folder}"]
    else:
        overrides += ["trainer.resume_mode=disable", f"actor_rollout_ref.model.path={request.model}"]
    if request.val_files:
        overrides.append(f"data.val_files={_hydra_list(request.val_files)}")
    sampling = "actor_rollout_ref.rollout.val_kwargs"
    if request.n is not None:
        if request.n < 1:
            raise ValueError(f"--n={request.n} must be at least 1")
        overrides.append(f"{sampling}.n={request.n}")
    if request.temperature is not None:
        if request.temperature < 0:
            raise ValueError(f"--temperature={request.temperature} must not be negative")
        do_sample = "false" if request.temperature == 0 else "true"
        overrides += [f"{sampling}.temperature={request.temperature}", f"{sampling}.do_sample={do_sample}"]
    if request.top_p is not None:
        overrides.append(f"{sampling}.top_p={request.top_p}")
    if request.dump_dir is not None:  # one JSONL per step: prompt, response, score, acc, pred for every sample
        overrides.append(f"trainer.validation_data_dir={os.path.abspath(request.dump_dir)}")
    return overrides + list(request.overrides)


def checkpoint_world_size(checkpoint: str) -> int | None:
    """The number of ranks that wrote an FSDP checkpoint (``actor/model_world_size_{W}_rank_*.pt``); None for
    other layouts (Megatron's distributed checkpoints reshard on load)."""
    actor = os.path.join(os.path.abspath(os.path.expanduser(checkpoint)), "actor")
    sizes = {int(m.group(1)) for name in os.listdir(actor) if (m := FSDP_SHARD.fullmatch(name))}
    if len(sizes) > 1:
        raise ValueError(f"--checkpoint {checkpoint!r}: actor/ mixes shards of world sizes {sorted(sizes)}")
    return sizes.pop() if sizes else None


def world_size_problem(checkpoint: str, nnodes: int, n_gpus_per_node: int) -> str | None:
    """Why verl cannot load ``checkpoint`` on ``nnodes`` x ``n_gpus_per_node`` GPUs (FSDP shards are per rank,
    loaded only by the same world size), with the overrides and alternatives that work; None when it can."""
    saved = checkpoint_world_size(checkpoint)
    if saved is None or saved == nnodes * n_gpus_per_node:
        return None
    per_node = n_gpus_per_node if saved % n_gpus_per_node == 0 else saved
    fits = f"trainer.nnodes={saved // per_node} trainer.n_gpus_per_node={per_node}"
    return (
        f"--checkpoint {checkpoint!r} was saved by {saved} ranks (actor/model_world_size_{saved}_rank_*.pt) and "
        f"verl's FSDP loads it only with the same number of GPUs; this run has trainer.nnodes={nnodes} x "
        f"trainer.n_gpus_per_node={n_gpus_per_node} = {nnodes * n_gpus_per_node}. Add {fits} (more than one node: "
        f"run these eval overrides through the SLURM script, {docs_url('replication.md')}), or convert it with "
        f"`python -m verl.model_merger merge --backend fsdp --local_dir <checkpoint>/actor --target_dir <hf dir>` "
        f"and score that with --model <hf dir>"
    )


def main_ppo_command(request: EvalRequest, overrides: list[str]) -> list[str]:
    return launch.main_ppo_command(resolve_config_dir(request.config_path), request.config_name, overrides)


def printable(command: list[str]) -> str:
    return shlex.join(command)
