"""``verl-rlif check``: compose and validate a training config as main_ppo would (no Ray, no GPU).

:func:`checked_config` is shared with ``verl-rlif eval``, which checks before it launches.
"""

from __future__ import annotations

import argparse
import sys

CONFIG_PATH_HELP = (
    "a config directory, or a pkg:// path (default: the packaged configs, pkg://verl_rlif.configs); a config of "
    "your own reaches the packaged ones with hydra.searchpath: [pkg://verl.trainer.config, pkg://verl_rlif.configs]"
)


def add_parser(subparsers) -> None:
    check = subparsers.add_parser("check", help="compose and validate a training config (no Ray, no GPU)")
    check.add_argument("--config-path", default=None, help=CONFIG_PATH_HELP)
    check.add_argument("--config-name", default="rlif", help="config name without .yaml (default: rlif)")
    check.add_argument("overrides", nargs="*", help="Hydra overrides, as for main_ppo (key=value)")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    code, found, _ = checked_config("verl-rlif check", args.config_path, args.config_name, args.overrides)
    if code:
        return code
    for warning in found:
        print(f"warning: {warning}")
    print(f"verl-rlif check: {args.config_name} is valid ({len(found)} warning(s))")
    return 0


def compose_hint(message: str, config_dir: str) -> str:
    """What Hydra's message leaves out: the valid ``rlif`` keys for a misspelled one (Hydra suggests appending it
    with ``+``, which only moves the error), the search path for our packaged parts, the config names for an
    unknown one."""
    import difflib
    import os
    import re

    from verl_rlif.config import config_keys
    from verl_rlif.configs import SEARCH_PATH

    override = re.search(r"Could not override '(rlif\.[^']*)'", message)
    if override:
        keys = config_keys()
        close = difflib.get_close_matches(override.group(1), keys, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        return f"\n{override.group(1)} is not an rlif key: {guess}valid keys: {keys}"
    missing = re.search(r"Could not find '((rlif_plugin|preset/|demo/)[^']*)'", message)
    if missing and SEARCH_PATH not in message:
        return (
            f"\n{missing.group(1)} is one of verl-rlif's packaged configs: add {SEARCH_PATH} to the config's "
            f"hydra.searchpath (after pkg://verl.trainer.config)"
        )
    if "Cannot find primary config" in message:
        names = sorted(name[: -len(".yaml")] for name in os.listdir(config_dir) if name.endswith(".yaml"))
        return f"\nconfigs in {config_dir}: {names}"
    return ""


def checked_config(prog: str, config_path: str | None, config_name: str, overrides: list[str]):
    """Compose and validate as `verl-rlif check` does: (exit code, warnings, the composed config or None); problems
    are printed to stderr. ``config_path``: a directory, a ``pkg://`` path, or None for the packaged configs."""
    import logging
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from verl_rlif.configs import resolve_config_dir

    # verl's imports warn about optional engines and kernels, and that this (login) node has no GPU: irrelevant here
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("verl.plugin.platform.platform_manager").addFilter(lambda record: record.levelno >= logging.ERROR)

    from verl_rlif.adapters.checks import ConfigError, data_file_warnings, validate, verify_registered, verl_validate

    try:
        config_dir = resolve_config_dir(config_path)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2, [], None
    try:
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            config = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # unknown config name, malformed override, ...
        hint = compose_hint(str(exc), config_dir)
        print(f"{prog}: cannot compose {config_name!r} from {config_dir}: {exc}{hint}", file=sys.stderr)
        return 2, [], None
    try:
        found = validate(config)
        verify_registered(config)
        verl_validate(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1, [], None
    return 0, found + data_file_warnings(config), config
