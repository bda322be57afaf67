"""Node checks for multi-node launches (``scripts/slurm/rlif.sbatch`` runs them through ``verl-rlif``).

``verl-rlif node-check`` (:func:`plugin_problem`): on one node, in the Python environment the Ray workers use,
import verl the way every verl process does and confirm that verl loaded verl-rlif's entry point and that every
adapter registered.

``verl-rlif ray-nodes ADDRESS`` (:func:`alive_hostnames`): the hostnames of the Ray nodes alive in the cluster at
ADDRESS (the launch script compares them with the SLURM node list while it waits for every node to join).
"""

from __future__ import annotations

import sys


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


def alive_hostnames(address: str) -> list[str]:
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return sorted(node["NodeManagerHostname"] for node in ray.nodes() if node.get("Alive"))
    finally:
        ray.shutdown()
