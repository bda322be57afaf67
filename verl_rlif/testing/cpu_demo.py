"""``make demo``: SmolLM2-135M-Instruct on the built-in arithmetic set, through verl's real ``main_ppo`` on the CPU."""

from __future__ import annotations

import os

from verl_rlif.testing.data import write_arithmetic_parquet
from verl_rlif.testing.e2e import MainPPORun
from verl_rlif.testing.smollm2 import DEFAULT_CACHE, smollm2_path

DEFAULT_OUTPUT = os.path.join("outputs", "demo")
TRAIN_PROMPTS, VAL_PROMPTS = 64, 8

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
) -> MainPPORun:
    """Write the data set, fetch and convert SmolLM2 unless ``model_path`` is given, and describe the run."""
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
        overrides=list(overrides or []),
    )


def step_summary(metrics: dict) -> str:
    parts = [f"{label} {metrics[key]:.3g}" for key, label in STEP_SUMMARY if key in metrics]
    return f"step {metrics['step']}: " + ", ".join(parts)
