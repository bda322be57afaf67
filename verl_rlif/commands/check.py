"""``verl-rlif check``: compose and validate a training config as main_ppo would (no Ray, no GPU).

:func:`checked_config` is shared with ``verl-rlif eval``, which checks before it launches.
"""

from __future__ import annotations

import argparse
import sys

from verl_rlif.memory import DEFAULT_GPU_GIB

CONFIG_PATH_HELP = (
    "a config directory, or a pkg:// path (default: the packaged configs, pkg://verl_rlif.configs); a config of "
    "your own reaches the packaged ones with hydra.searchpath: [pkg://verl.trainer.config, pkg://verl_rlif.configs]"
)


def positive_gib(text: str) -> float:
    """argparse type of ``--gpu-memory-gib``: a finite number above zero (the estimate divides by it)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a GPU size: give GiB above 0, e.g. 80")
    return value


def add_parser(subparsers) -> None:
    check = subparsers.add_parser("check", help="compose and validate a training config (no Ray, no GPU)")
    check.add_argument("--config-path", default=None, help=CONFIG_PATH_HELP)
    check.add_argument("--config-name", default="rlif", help="config name without .yaml (default: rlif)")
    check.add_argument(
        "--gpu-memory-gib",
        type=positive_gib,
        default=DEFAULT_GPU_GIB,
        help=f"GPU memory for the per-GPU memory estimate (default: {DEFAULT_GPU_GIB:g})",
    )
    check.add_argument("overrides", nargs="*", help="Hydra overrides, as for main_ppo (key=value)")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    code, found, config = checked_config("verl-rlif check", args.config_path, args.config_name, args.overrides)
    if code:
        return code
    from verl_rlif.adapters.checks import describe
    from verl_rlif.memory import report

    breakdown, memory_warnings = report(config, args.gpu_memory_gib)
    print("\n".join(breakdown))
    found = found + memory_warnings
    for warning in found:
        print(f"warning: {warning}")
    print(describe(config))
    print(f"verl-rlif check: {args.config_name} is valid ({len(found)} warning(s))")
    return 0


def _compose(config_dir: str, config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def _leaf_keys(node, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (lists are leaves), without resolving interpolations."""
    from omegaconf import DictConfig

    keys = []
    for name in node.keys():
        key = f"{prefix}{name}"
        child = node._get_node(name)
        keys += _leaf_keys(child, f"{key}.") if isinstance(child, DictConfig) else [key]
    return keys


def compose_hint(message: str, config_dir: str, config_name: str | None = None) -> str:
    """What Hydra's message leaves out: the nearest valid key for a misspelled one (Hydra suggests appending it with
    ``+``, which only moves the error: verl would never read the new key), all valid ``rlif`` keys, the search
    path for our packaged parts, the config names for an unknown one."""
    import difflib
    import os
    import re

    from verl_rlif.config import config_keys
    from verl_rlif.configs import CONFIG_DIR, SEARCH_PATH

    override = re.search(r"Could not override '(rlif\.[^']*)'", message)
    if override and override.group(1) in config_keys():  # the key exists: a mapping value with keys it lacks
        return (
            f"\n{override.group(1)} is an rlif key holding a mapping: a value that adds entries needs the + prefix, "
            f"as Hydra says (+{override.group(1)}={{...}}, or +{override.group(1)}.NAME=VALUE)"
        )
    if override:
        keys = config_keys()
        close = difflib.get_close_matches(override.group(1), keys, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        return f"\n{override.group(1)} is not an rlif key: {guess}valid keys: {keys}"
    override = re.search(r"Could not override '([^']*)'", message)
    if override and "No match in the defaults list" in message:  # a config group (preset=...): Hydra's "+" is right
        return ""
    if override and config_name is not None:
        try:  # the config as composed without the overrides: its keys are the ones that exist
            keys = _leaf_keys(_compose(config_dir, config_name, []))
        except Exception:  # the config itself does not compose: Hydra's message is all there is
            return ""
        parent = override.group(1).rpartition(".")[0]
        siblings = [key for key in keys if key.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(override.group(1), siblings, n=1) or difflib.get_close_matches(
            override.group(1), keys, n=1, cutoff=0.8
        )
        guess = f"did you mean {close[0]}?" if close else "no key of this config is close to it."
        return (
            f"\n{override.group(1)} is not a key of {config_name}: {guess} (a + prefix would add it, "
            f"but neither verl nor verl-rlif reads a key it does not define)"
        )
    # "Could not load 'base/x'" for a plain defaults entry, "Could not find 'base/x'" for "base: x"
    missing = re.search(r"Could not (?:find|load) '((rlif_plugin|base/|preset/|demo/)[^']*)'", message)
    if missing and SEARCH_PATH not in message and CONFIG_DIR not in message:  # else: found, the option is wrong
        return (
            f"\n{missing.group(1)} is one of verl-rlif's packaged configs: add {SEARCH_PATH} to the config's "
            f"hydra.searchpath (after pkg://verl.trainer.config)"
        )
    if "Cannot find primary config" in message:
        names = sorted(name[: -len(".yaml")] for name in os.listdir(config_dir) if name.endswith(".yaml"))
        return f"\nconfigs in {config_dir}: {names}"
    return ""


def condensed(message: str) -> str:
    """Hydra's compose error on one line: its search-path listing dropped (the hint says what is missing from it)
    and ``Available options in 'preset':`` followed by one option a line made a comma-separated list."""
    import re

    message = re.sub(r"\s*Config search path:(\n\t[^\n]*)*", "", message)
    message = re.sub(r":((?:\n\t[^\n]*)+)", lambda m: ": " + ", ".join(m.group(1).split()), message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(line if line[-1] in ".:?!" or line is lines[-1] else f"{line}." for line in lines)


def checked_config(prog: str, config_path: str | None, config_name: str, overrides: list[str]):
    """Compose and validate as `verl-rlif check` does: (exit code, warnings, the composed config or None); problems
    are printed to stderr. ``config_path``: a directory, a ``pkg://`` path, or None for the packaged configs."""
    import logging
    import re
    import warnings

    import yaml
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
        config = _compose(config_dir, config_name, overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # unknown config name, malformed override, ...
        message = str(exc)
        hint = compose_hint(message, config_dir, config_name)
        # Hydra's "To append ... use +key" only moves the error, except for a mapping that gains entries
        if hint and "Could not override" in message and "holding a mapping" not in hint:
            message = re.sub(r"\nTo append to your config use \+\S+", "", message)
        print(f"{prog}: cannot compose {config_name!r} from {config_dir}: {condensed(message)}{hint}", file=sys.stderr)
        return 2, [], None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # Hydra lets a file it cannot parse through as is
        what = "a config file is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else condensed(str(exc))
        print(f"{prog}: cannot compose {config_name!r} from {config_dir}: {what}", file=sys.stderr)
        return 2, [], None
    try:
        mistyped = override_type_problems(config, config_dir, config_name, overrides)
        if mistyped:
            raise ConfigError("verl-rlif config is invalid:\n" + "\n".join(f"  - {p}" for p in mistyped))
        found = validate(config)
        verify_registered(config)
        verl_validate(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1, [], None
    return 0, found + data_file_warnings(config), config


def _wrong_type(default, value) -> str | None:
    """What ``value`` should be, judged by the config's own value for that key; None when it fits."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    return None  # strings, lists, mappings and nulls: verl accepts several shapes, its own validation judges them


def override_type_problems(config, config_dir: str, config_name: str, overrides: list[str]) -> list[str]:
    """Command-line overrides whose value has another type than the config's own value for that key
    (``actor_rollout_ref.rollout.temperature=hot`` arrives as a string, and verl would fail on it only once its
    workers start). ``rlif.*`` keys are typed by :class:`verl_rlif.config.RLIFConfig` instead."""
    from omegaconf import OmegaConf

    assignments = []
    for override in overrides:
        key, sep, _ = override.partition("=")
        key = key.lstrip("+")
        if sep and not override.startswith("~") and "@" not in key and not key.startswith(("hydra.", "rlif.")):
            assignments.append(key)
    if not assignments:
        return []
    try:
        reference = _compose(config_dir, config_name, [])
    except Exception:  # composes only with the overrides (e.g. one fills a required group): nothing to compare
        return []
    problems = []
    for key in assignments:
        try:
            default, value = OmegaConf.select(reference, key), OmegaConf.select(config, key)
        except Exception:  # an interpolation that does not resolve here; verl's validation reports it
            continue
        wording = _wrong_type(default, value)
        if wording:
            problems.append(f"{key}={value!r} must be {wording} (as in {config_name}: {key}={default!r})")
    return problems
