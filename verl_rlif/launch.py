"""The one ``python -m verl.trainer.main_ppo`` command line: ``verl-rlif eval`` and ``demo`` (and the end-to-end
tests) all launch verl's unmodified entry point with a config directory, a config name and Hydra overrides."""

from __future__ import annotations

import sys


def main_ppo_command(config_dir: str, config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
    """argv for verl's ``main_ppo`` in this Python environment. ``config_dir`` is an absolute directory or a
    ``pkg://`` search path (Hydra accepts both for ``--config-path``)."""
    return [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        "--config-path",
        config_dir,
        "--config-name",
        config_name,
        *overrides,
    ]
