"""The shipped Hydra configs, inside the package so that a ``pip install`` carries them.

``rlif.yaml`` / ``rlif_megatron.yaml`` (verl's trainer config + the plugin), ``rlif_plugin.yaml`` (every switch and
the ``rlif:`` section), the experiment configs, ``preset/`` (baselines) and ``demo/`` (the CPU/GPU demo overrides).

verl's ``main_ppo`` composes them from the package, from any directory::

    python -m verl.trainer.main_ppo --config-path pkg://verl_rlif.configs --config-name rlif ...

and a user's own config reaches them through its search path (``hydra.searchpath: [pkg://verl.trainer.config,
pkg://verl_rlif.configs]`` with ``defaults: [ppo_trainer, rlif_plugin, _self_]``). This module imports nothing
heavy: the command line resolves config directories with it before Hydra or verl load.
"""

from __future__ import annotations

import importlib.util
import os

PACKAGE = "verl_rlif.configs"
SEARCH_PATH = f"pkg://{PACKAGE}"
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
"""The packaged configs on disk (a wheel installs them as plain files, as verl's own configs)."""


def resolve_config_dir(config_path: str | None) -> str:
    """The directory a ``--config-path`` names: None -> the packaged configs; ``pkg://a.b`` -> that package's
    directory (as Hydra resolves it for ``main_ppo``); anything else -> that directory, made absolute.

    Raises:
        ValueError: a ``pkg://`` module that cannot be imported, or a path that is not a directory.
    """
    if config_path is None:
        return CONFIG_DIR
    if config_path.startswith("pkg://"):
        module = config_path[len("pkg://") :].strip("/").replace("/", ".")
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"--config-path {config_path!r}: no installed package {module!r}")
        return os.path.abspath(next(iter(spec.submodule_search_locations)))
    folder = os.path.abspath(os.path.expanduser(config_path))
    if not os.path.isdir(folder):
        raise ValueError(
            f"--config-path {config_path!r} is not a directory (leave it out for the shipped configs, {SEARCH_PATH})"
        )
    return folder
