"""``verl-rlif ray-nodes``: the alive nodes of a Ray cluster, bounded in time (scripts/slurm/rlif.sbatch)."""

from __future__ import annotations

import argparse
import os
import sys

from verl_rlif.cluster import RAY_NODES_TIMEOUT_S


def add_parser(subparsers) -> None:
    nodes = subparsers.add_parser("ray-nodes", help="hostnames of the alive nodes of a Ray cluster")
    nodes.add_argument("address", help="the Ray head, host:port")
    nodes.add_argument(
        "--timeout-s",
        type=float,
        default=RAY_NODES_TIMEOUT_S,
        help=f"give up after this long (default: {RAY_NODES_TIMEOUT_S:g}); exit 4",
    )
    nodes.add_argument("--job-resource", help="list nodes by the name after this custom-resource prefix")
    nodes.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from verl_rlif.cluster import NoHead, alive_nodes

    try:
        nodes = alive_nodes(args.address, args.timeout_s, args.job_resource)
    except NoHead as exc:
        print(f"verl-rlif ray-nodes: {exc}", file=sys.stderr)
        return 3
    except TimeoutError as exc:
        print(f"verl-rlif ray-nodes: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(4)  # a connect still hanging in Ray's threads would block a normal exit
    except Exception as exc:  # Ray's own errors (InvalidAuthToken, version mismatch): one line, the cause
        print(
            f"verl-rlif ray-nodes: asking the Ray head at {args.address} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print("\n".join(nodes))
    return 0
