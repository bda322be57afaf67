"""``make demo``: SmolLM2-135M-Instruct on the built-in arithmetic set, through verl's real ``main_ppo`` on the CPU."""

from __future__ import annotations

import os

from verl_rlif.configs import resolve_config_dir
from verl_rlif.testing.data import write_arithmetic_parquet
from verl_rlif.testing.e2e import MainPPORun
from verl_rlif.testing.smollm2 import DEFAULT_CACHE, smollm2_path

DEFAULT_OUTPUT = os.path.join("outputs", "demo")
TRAIN_PROMPTS, VAL_PROMPTS = 64, 8

# demo/cpu.yaml picks verl's FSDP2 engine for the actor (what rlif.yaml runs); on top of rlif_megatron the
# actor goes back to Megatron, at TP=1 in the demo's single training process (the reference follows rlif_megatron)
ENGINE_OVERRIDES = {
    "rlif_megatron": [
        "actor_rollout_ref.actor.strategy=megatron",
        "~actor_rollout_ref.actor.fsdp_config",
        "actor_rollout_ref.actor.megatron.tensor_model_parallel_size=1",
    ],
}

# (metric key, label) printed after each step
STEP_SUMMARY = [
    ("rlif/vote_reward/mean", "vote reward"),
    ("rlif/majority_ratio/mean", "majority ratio"),
    ("rlif/self_certainty/mean", "self-certainty"),
    ("rlif/pseudo_label_acc", "pseudo-label acc"),
    ("rlif/ground_truth_acc", "ground-truth acc"),
    ("rlif/kl_cov/selected_fraction", "KL-Cov tokens"),
    ("actor/entropy", "entropy"),
    ("response_length/mean", "response length"),
    ("timing_s/step", "seconds"),
]


def prepare_demo(
    steps: int,
    output_dir: str = DEFAULT_OUTPUT,
    model_path: str | None = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    config_name: str = "rlif",
    cache_dir: str = DEFAULT_CACHE,
    config_dir: str | None = None,
) -> MainPPORun:
    """Write the data set, fetch and convert SmolLM2 unless ``model_path`` is given, and describe the run.

    ``config_dir`` holds the configs to compose: a directory or a ``pkg://`` path (default: the packaged configs).

    Raises:
        FileNotFoundError: ``config_dir`` lacks the config or ``demo/<device>.yaml`` (before any data or download).
    """
    try:
        config_dir = resolve_config_dir(config_dir)
    except ValueError as exc:
        raise FileNotFoundError(str(exc)) from None
    check_config_dir(config_dir, config_name, device)  # before the data set and a model download
    output_dir = os.path.abspath(output_dir)
    train, val = write_arithmetic_parquet(os.path.join(output_dir, "data"), TRAIN_PROMPTS, VAL_PROMPTS)
    return MainPPORun(
        model_path=model_path or smollm2_path(cache_dir),
        train_file=train,
        val_file=val,
        output_dir=output_dir,
        steps=steps,
        device=device,
        config_name=config_name,
        overrides=[*ENGINE_OVERRIDES.get(config_name, []), *(overrides or [])],
        config_dir=config_dir,
    )


def check_config_dir(config_dir: str, config_name: str, device: str) -> None:
    """The files ``main_ppo`` will compose: the config and the demo's override file ``demo/<device>.yaml``."""
    needed = [os.path.join(config_dir, f"{config_name}.yaml"), os.path.join(config_dir, "demo", f"{device}.yaml")]
    missing = [path for path in needed if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"verl-rlif demo composes its run from {config_dir}, but {', '.join(missing)} does not exist. Leave out "
            "--config-path for the packaged configs, or give a directory that holds both (copy demo/ from "
            "verl_rlif/configs)."
        )


def step_summary(metrics: dict) -> str:
    parts = [f"{label} {metrics[key]:.3g}" for key, label in STEP_SUMMARY if key in metrics]
    return f"step {metrics['step']}: " + ", ".join(parts)
