"""verl-rlif's entry point in every process that imports verl: driver, TaskRunner and every Ray worker.

verl imports this module from the ``verl.plugins`` entry-point group (fallback:
``VERL_USE_EXTERNAL_MODULES=verl_rlif.register``) while ``verl/__init__.py`` is still running. So it imports
only the standard library and registers nothing itself. Instead it arranges for each adapter module to be
imported right after verl finishes importing the registry that adapter plugs into (a post-import hook on
``sys.meta_path``; no verl object is replaced). A process that never imports, say, verl's trainer registry
(a rollout server) never pays for our trainer, and nothing is imported while verl is half-initialised.

It also registers the config resolver ``rlif_kl_cov_loss_mode`` (``verl_rlif.config``, plain OmegaConf), so the
policy loss named by ``rlif.kl_cov.rounding`` resolves wherever verl resolves the training config.

verl swallows entry-point errors at DEBUG level, so an adapter that fails to import is logged at WARNING
here and kept in :data:`LOAD_ERRORS`; the trainer names it at init (``verl_rlif.adapters.checks``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
from types import ModuleType

logger = logging.getLogger(__name__)

# verl module whose import completes a registry  ->  our adapter modules that register into it
ADAPTERS: dict[str, tuple[str, ...]] = {
    "verl.trainer.ppo.core_algos": ("verl_rlif.adapters.policy_loss", "verl_rlif.adapters.advantage"),
    "verl.experimental.reward_loop.reward_manager": ("verl_rlif.adapters.reward_manager",),
    "verl.trainer.ppo.v1": ("verl_rlif.adapters.trainer",),
    "verl.workers.engine": ("verl_rlif.adapters.engines",),
}

LOADED: set[str] = set()
"""Adapter modules imported (and therefore registered) in this process."""
LOAD_ERRORS: dict[str, str] = {}
"""Adapter module -> the error that stopped it from registering, in this process."""


def load_adapters(verl_module: str) -> None:
    """Import the adapters that plug into ``verl_module`` (idempotent; errors are recorded, not raised)."""
    for name in ADAPTERS[verl_module]:
        if name in LOADED or name in LOAD_ERRORS:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken adapter must not take verl down; the trainer reports it at init
            LOAD_ERRORS[name] = f"{type(exc).__name__}: {exc}"
            logger.warning("verl-rlif: could not register %s: %s", name, LOAD_ERRORS[name])
        else:
            LOADED.add(name)


class _RegisterAfterExec(importlib.abc.Loader):
    """Runs the real loader, then our registrations for that module."""

    def __init__(self, loader: importlib.abc.Loader, verl_module: str) -> None:
        self._loader = loader
        self._verl_module = verl_module

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        load_adapters(self._verl_module)

    def __getattr__(self, name: str):  # get_source, get_code, is_package, ... of the real loader
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds the watched verl modules with the other finders and wraps their loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in ADAPTERS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _RegisterAfterExec(spec.loader, fullname)
        return spec


def watch(verl_module: str, *modules: str) -> None:
    """Also import ``modules`` right after verl finishes importing ``verl_module`` (at once if it already has).

    For opt-in registrations outside this entry point, e.g. ``verl_rlif.testing.register``.
    """
    known = ADAPTERS.get(verl_module, ())
    ADAPTERS[verl_module] = known + tuple(m for m in modules if m not in known)
    install()


def install() -> None:
    """Install the post-import hook once; register at once for watched modules that are already imported."""
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
    for verl_module in ADAPTERS:
        if verl_module in sys.modules:
            load_adapters(verl_module)


def _register_config_resolver() -> None:
    try:
        from verl_rlif.config import register_config_resolver

        register_config_resolver()
    except Exception as exc:  # same policy as the adapters: log, and let the trainer's checks name it
        LOAD_ERRORS["verl_rlif.config"] = f"{type(exc).__name__}: {exc}"
        logger.warning("verl-rlif: could not register the config resolver: %s", LOAD_ERRORS["verl_rlif.config"])


_register_config_resolver()
install()
