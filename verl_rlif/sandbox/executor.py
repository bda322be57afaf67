"""The executor interface shared by the local pool and the SandboxFusion backend, with a result cache.

``run(program, inputs, fn_name)`` returns one behaviour signature per input (``verl_rlif.sandbox.signature``).
Stdin mode (``fn_name`` None): each input is the program's stdin text. Function-call mode: each input is the
argument list (or keyword object) of ``fn_name``, a JSON-serialisable value. At most ``max_inputs`` inputs are
used. Identical (program, inputs) pairs are answered from a bounded cache: a group of sampled responses often
holds the same program several times. Results holding ``SANDBOX_ERROR`` (an infrastructure failure, not the
program's behaviour) are not cached, so the program runs again next time. Any other exception of the backend
(a worker that cannot be restarted, ...) becomes ``SANDBOX_ERROR`` for that request, logged; only
``SandboxUnavailable`` (the configured isolation is missing) propagates. Thread-safe:
verl's reward workers call it from many threads at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.signature import SANDBOX_ERROR

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 16384


class SandboxUnavailable(RuntimeError):
    """The configured minimum isolation (``rlif.sandbox.required_layers``) cannot be established here."""


def encode_inputs(inputs: Sequence[Any], fn_name: str | None) -> list[str]:
    """Inputs as the strings a worker receives: stdin texts, or JSON argument lists for ``fn_name``."""
    if fn_name is None:
        if not all(isinstance(item, str) for item in inputs):
            raise TypeError("stdin inputs must be strings")
        return list(inputs)
    if not all(isinstance(item, (list, tuple, dict)) for item in inputs):
        raise TypeError(f"inputs for fn_name={fn_name!r} must be argument lists (or keyword objects)")
    return [json.dumps(item, sort_keys=True) for item in inputs]


class Executor(ABC):
    """Runs programs on inputs and returns signatures; subclasses implement :meth:`_run`."""

    def __init__(self, settings: SandboxConfig) -> None:
        self.settings = settings
        self.owner_pid = os.getpid()  # a forked copy of this process must not talk to this process's workers
        self.layers: dict[str, str] = {}
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @abstractmethod
    def start(self) -> None:
        """Bring the backend up (idempotent); raises :class:`SandboxUnavailable` when it cannot be trusted."""

    @abstractmethod
    def close(self) -> None:
        """Release processes and connections (idempotent)."""

    @property
    def parallelism(self) -> int:
        return self.settings.workers

    def run(self, program: str, inputs: Sequence[Any], fn_name: str | None = None) -> list[str]:
        encoded = encode_inputs(list(inputs)[: self.settings.max_inputs], fn_name)
        if not encoded:
            return []
        key = hashlib.sha256(json.dumps([program, fn_name, encoded]).encode("utf-8", "surrogatepass")).hexdigest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return list(self._cache[key])
        try:
            signatures = self._run(program, encoded, fn_name)
        except SandboxUnavailable:  # the configured isolation is missing: that must stop the run, loudly
            raise
        except Exception:  # the backend's failure, never the program's: no reward step may crash on it
            logger.exception("verl-rlif sandbox: the backend failed; the program gets no result this time")
            return [SANDBOX_ERROR] * len(encoded)
        if SANDBOX_ERROR in signatures:  # the infrastructure's failure, not the program's behaviour: try again later
            return list(signatures)
        with self._cache_lock:
            self._cache[key] = signatures
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return list(signatures)

    @abstractmethod
    def _run(self, program: str, inputs: list[str], fn_name: str | None) -> list[str]:
        """Signatures of ``program`` on the encoded ``inputs`` (never raises on anything the program does)."""

    def describe(self) -> str:
        """One line: which layers are active and which are not (logged at start-up)."""
        active = [name for name, state in self.layers.items() if state.startswith("active")]
        other = [f"{name} ({state})" for name, state in self.layers.items() if not state.startswith("active")]
        return f"active: {', '.join(active) or 'none'}; not active: {'; '.join(other) or 'none'}"
