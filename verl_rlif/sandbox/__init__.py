"""Sandboxed execution of model-generated Python for behaviour clustering (docs/sandbox.md). No verl import.

``configure(settings)`` once per process (the reward manager does, from ``rlif.sandbox``), then
``get_executor().run(program, inputs, fn_name)`` returns one behaviour signature per input. The local backend
(``local.py`` + ``zygote.py``) isolates in layers and fails closed; the ``sandbox_fusion`` backend
(``remote.py``) sends the same harness to a SandboxFusion server. Modules the worker imports (``harness``,
``signature``, ``seccomp``, ``landlock``, ``zygote``) use the standard library only.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from verl_rlif.config import SandboxConfig
    from verl_rlif.sandbox.executor import Executor

_lock = threading.Lock()
_settings: SandboxConfig | None = None
_executor: Executor | None = None


def make_executor(settings: SandboxConfig) -> Executor:
    """A new, not yet started executor for ``settings.backend``."""
    if settings.backend == "sandbox_fusion":
        from verl_rlif.sandbox.remote import SandboxFusionExecutor

        return SandboxFusionExecutor(settings)
    from verl_rlif.sandbox.local import LocalExecutor

    return LocalExecutor(settings)


def configure(settings: SandboxConfig) -> None:
    """Use ``settings`` from now on in this process (an executor with other settings is closed)."""
    global _settings, _executor
    with _lock:
        if settings == _settings:
            return
        if _executor is not None and _executor.owner_pid == os.getpid():
            _executor.close()
        _settings, _executor = settings, None


def current_settings() -> SandboxConfig:
    """The configured settings (defaults until :func:`configure` is called)."""
    from verl_rlif.config import SandboxConfig

    return _settings or SandboxConfig()


def get_executor() -> Executor:
    """This process's executor, created (with the configured or default settings) and started on first use."""
    global _settings, _executor
    with _lock:
        if _executor is not None and _executor.owner_pid != os.getpid():
            _executor = None  # inherited through a fork: its workers belong to the parent, which closes them
        if _executor is None:
            _settings = current_settings()
            _executor = make_executor(_settings)
        executor = _executor
    executor.start()
    return executor


def shutdown() -> None:
    global _executor
    with _lock:
        if _executor is not None and _executor.owner_pid == os.getpid():
            _executor.close()
        _executor = None


atexit.register(shutdown)
