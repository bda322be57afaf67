"""``verl-rlif ray-nodes``: the hostnames of the alive nodes of a Ray cluster (scripts/slurm/rlif.sbatch)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    nodes = subparsers.add_parser("ray-nodes", help="hostnames of the alive nodes of a Ray cluster")
    nodes.add_argument("address", help="the Ray head, host:port")
    nodes.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verl_rlif.cluster import alive_hostnames

    print("\n".join(alive_hostnames(args.address)))
    return 0
