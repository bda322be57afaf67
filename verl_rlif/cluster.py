"""Node checks for multi-node launches (``scripts/slurm/rlif.sbatch`` runs them through ``verl-rlif``).

``verl-rlif node-check`` (:func:`plugin_problem`): on one node, in the Python environment the Ray workers use,
import verl the way every verl process does and confirm that verl loaded verl-rlif's entry point and that every
adapter registered.

``verl-rlif ray-nodes ADDRESS`` (:func:`alive_nodes`): the Ray nodes alive in the cluster at ADDRESS, within a time
limit (the launch script polls it while it waits for every node to join, and before it starts a head, to refuse a
port another cluster or program holds). With ``--job-resource PREFIX`` a node started with a custom resource
``PREFIX<name>`` is listed as ``<name>``, any other as ``foreign <hostname>``: nodes of another cluster, or two
nodes with one hostname, cannot be mistaken for this job's.
"""

from __future__ import annotations

import sys

# How long `ray-nodes` waits for the Ray head's answer: the launch script polls it, so one slow answer only delays.
RAY_NODES_TIMEOUT_S = 30.0


def plugin_problem() -> str | None:
    """Why verl would run without verl-rlif in this environment, or None."""
    try:
        import verl  # noqa: F401  (runs verl's plugin loading, as in every verl process)
    except Exception as exc:
        return f"cannot import verl: {type(exc).__name__}: {exc}"
    if "verl_rlif.register" not in sys.modules:
        return (
            "verl did not load the verl-rlif entry point: is verl-rlif installed in this environment, and "
            "VERL_USE_EXTERNAL_PLUGINS not 'none' (else set VERL_USE_EXTERNAL_MODULES=verl_rlif.register)?"
        )
    import importlib

    from verl_rlif import register

    for verl_module in register.ADAPTERS:  # the registries verl's trainer and workers import
        try:
            importlib.import_module(verl_module)
        except Exception as exc:
            return f"cannot import {verl_module}: {type(exc).__name__}: {exc}"
    if register.LOAD_ERRORS:
        return "; ".join(f"{module} failed to register: {error}" for module, error in register.LOAD_ERRORS.items())
    missing = [name for modules in register.ADAPTERS.values() for name in modules if name not in register.LOADED]
    return f"adapters not registered: {missing}" if missing else None


class NoHead(RuntimeError):
    """Nothing listens at the address (connection refused): no Ray head is up there yet."""


def _port_open(address: str, timeout_s: float) -> None:
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except ConnectionRefusedError as exc:
        raise NoHead(f"nothing listens at {address} ({exc.strerror})") from exc
    except OSError as exc:
        raise TimeoutError(f"cannot reach {address}: {exc}") from exc


def _node_names(nodes: list[dict], job_resource: str | None) -> list[str]:
    names = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        ours = [key for key in node.get("Resources", {}) if job_resource and key.startswith(job_resource)]
        if ours:
            names.extend(key[len(job_resource) :] for key in ours)
        else:
            names.append(f"foreign {node['NodeManagerHostname']}" if job_resource else node["NodeManagerHostname"])
    return sorted(names)


def alive_nodes(address: str, timeout_s: float = RAY_NODES_TIMEOUT_S, job_resource: str | None = None) -> list[str]:
    """The alive nodes of the Ray cluster at ADDRESS: hostnames, or with ``job_resource`` the names its nodes carry
    (``foreign <hostname>`` for the others). Raises :class:`NoHead` when nothing listens at ADDRESS and
    ``TimeoutError`` when no answer comes within ``timeout_s`` (Ray's own connect retries for far longer, and a
    program that is not a Ray head may never answer)."""
    import threading

    _port_open(address, timeout_s)
    answer: dict = {}

    def ask() -> None:
        try:
            import ray

            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            try:
                answer["nodes"] = ray.nodes()
            finally:
                ray.shutdown()
        except BaseException as exc:  # handed to the caller's thread
            answer["error"] = exc

    thread = threading.Thread(target=ask, daemon=True)  # daemon: a hung connect cannot keep the process alive
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(
            f"no answer from a Ray head at {address} within {timeout_s:g}s (a program other than Ray on the port, "
            "another Ray version, or a firewall)"
        )
    if "error" in answer:
        raise answer["error"]
    return _node_names(answer["nodes"], job_resource)
