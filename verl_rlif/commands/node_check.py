"""``verl-rlif node-check``: on a cluster node, does verl load and register the plugin here?
(scripts/slurm/rlif.sbatch runs it on every node before main_ppo.)"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    check = subparsers.add_parser("node-check", help="confirm verl loads and registers verl-rlif on this node")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import socket
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)  # verl/megatron import noise about optional kernels
    from verl_rlif import __version__
    from verl_rlif.cluster import plugin_problem

    problem = plugin_problem()
    if problem:
        print(f"verl-rlif plugin FAILED on {socket.gethostname()}: {problem}")
        return 1
    print(f"verl-rlif plugin OK on {socket.gethostname()} (verl-rlif {__version__})")
    return 0
