"""The ``verl-rlif`` command line: the parser assembled from one module per subcommand (:mod:`verl_rlif.commands`).

verl-rlif demo          verl's real main_ppo with the plugin on the CPU: SmolLM2-135M, arithmetic, a few steps, plot
verl-rlif study         presets side by side through main_ppo: held-out accuracy, figure and table
verl-rlif pipeline      the RLIF reward pipeline on a built-in batch, each step printed (no verl, no model)
verl-rlif plot          draw the collapse monitors of runs from verl's file logger, wandb or TensorBoard
verl-rlif vote          extract answers and vote over a JSONL file (--task math|number|choice|code)
verl-rlif prepare-data  turn a dataset's files (or its hub copy) into verl's parquet schema
verl-rlif check         compose and validate a training config (no Ray, no GPU)
verl-rlif eval          score a checkpoint with verl's validation only
verl-rlif node-check    on a cluster node: does verl load the plugin here? (scripts/slurm/rlif.sbatch)
verl-rlif ray-nodes     the alive nodes of a Ray cluster (scripts/slurm/rlif.sbatch)
"""

from __future__ import annotations

import argparse
import platform
import sys

from verl_rlif import HOMEPAGE, __version__
from verl_rlif.commands import (
    check,
    demo,
    evaluate,
    node_check,
    pipeline,
    plot,
    prepare_data,
    ray_nodes,
    study,
    vote,
)

MODULES = [demo, study, pipeline, plot, check, vote, prepare_data, evaluate, node_check, ray_nodes]
"""The subcommands, in the order ``--help`` lists them; each adds its parser and sets ``run``."""


def version_line() -> str:
    """``verl-rlif X (verl Y, Python Z)``: the pair that must match (verl is pinned exactly), read from the installed
    metadata without importing verl."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        verl = version("verl")
    except PackageNotFoundError:
        verl = "not installed"
    return f"verl-rlif {__version__} (verl {verl}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="verl-rlif",
        description="Label-free RL (RLIF) for verl.",
        epilog=f"Documentation: {HOMEPAGE} (README) and {HOMEPAGE}/tree/main/docs",
    )
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `verl-rlif vote ... | head`: the reader left; no traceback, and none at exit either
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
