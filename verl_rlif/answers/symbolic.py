"""Bounded symbolic canonicalisation and equivalence of math answers, in a child process killed at a deadline.

The cheap path (``normalize.py``) settles numbers, tuples, intervals and sets. What is left (``2\\sqrt{2}``,
``x+1``, ``\\frac{\\pi}{4}``) goes to one persistent child process per process (``symbolic_worker.py``): a
parse + simplify gives a canonical LaTeX key, and at vote time two keys can be compared with math-verify.
Every request waits at most ``deadline_s`` (enforced here, from outside the parsing thread, with ``select``);
on expiry the child is killed (its whole process group) and restarted on the next request, and the caller
falls back to the normalised string. Results are cached, in separate caches for responses and for ground
truths (a ground truth's result, a timeout included, never becomes a response's); concurrent callers (verl runs
reward managers in threads) are serialised by a lock.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict

logger = logging.getLogger(__name__)

STARTUP_DEADLINE_S = 60.0  # importing sympy/math-verify in a fresh process; not charged to any answer
CACHE_SIZE = 65536  # entries per cache
RESPONSE_CACHE, TRUTH_CACHE = "response", "truth"
MAX_SYMBOLIC_CHARS = 300  # longer strings are not worth parsing: they stay normalised strings


class SymbolicWorker:
    """One child process answering JSON-line requests, each within a deadline."""

    def __init__(self, deadline_s: float = 2.0) -> None:
        self.deadline_s = deadline_s
        self.timeouts = 0
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._caches: dict[str, OrderedDict[tuple, object]] = {
            RESPONSE_CACHE: OrderedDict(),
            TRUTH_CACHE: OrderedDict(),
        }

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "verl_rlif.answers.symbolic_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, so a kill takes everything it started
        )
        self._send("canonical", ["1"])  # warm-up: imports happen here, under the startup deadline
        if self._receive(STARTUP_DEADLINE_S) is _TIMEOUT:
            self.close()
            raise RuntimeError("the symbolic answer worker did not start")

    def _send(self, op: str, args: list) -> None:
        self._proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self._proc.stdin.flush()

    def _receive(self, deadline_s: float):
        ready, _, _ = select.select([self._proc.stdout], [], [], deadline_s)
        if not ready:
            return _TIMEOUT
        line = self._proc.stdout.readline()
        return json.loads(line) if line else None

    def close(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc = None

    def request(self, op: str, *args: str, cache: str = RESPONSE_CACHE):
        """The child's answer, or None on failure or deadline (then the child is killed).

        ``cache`` names the cache that is read and written: ``response`` or ``truth``.
        """
        key = (op, *args)
        results = self._caches[cache]
        with self._lock:
            if key in results:
                results.move_to_end(key)
                return results[key]
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                started = time.monotonic()
                self._send(op, list(args))
                result = self._receive(self.deadline_s)
            except (OSError, RuntimeError, ValueError):
                logger.warning("verl-rlif: symbolic answer worker failed; using normalised strings", exc_info=True)
                self.close()
                return None
            if result is _TIMEOUT:
                self.timeouts += 1
                logger.info("symbolic %s of %r exceeded %.1fs; worker restarted", op, args, time.monotonic() - started)
                self.close()
                result = None
            results[key] = result
            if len(results) > CACHE_SIZE:
                results.popitem(last=False)
            return result


_TIMEOUT = object()
_worker = SymbolicWorker()
_enabled = True
atexit.register(_worker.close)


def configure(enabled: bool, deadline_s: float) -> None:
    """Set from ``rlif.extractor.symbolic`` / ``symbolic_deadline_s`` (the reward manager does, per process)."""
    global _enabled
    _enabled = enabled
    _worker.deadline_s = deadline_s


def symbolic_key(normalized: str, cache: str = RESPONSE_CACHE) -> str | None:
    """Canonical LaTeX of a normalised answer, or None (disabled, too long, unparsable, or past the deadline).

    ``cache``: ``response`` (the default) or ``truth`` for ground truths, which must not share the responses'.
    """
    if not _enabled or len(normalized) > MAX_SYMBOLIC_CHARS:
        return None
    return _worker.request("canonical", normalized, cache=cache)


def equivalent(left: str, right: str) -> bool:
    """Whether math-verify finds two keys equivalent, within the deadline (False when unknown)."""
    if not _enabled or max(len(left), len(right)) > MAX_SYMBOLIC_CHARS:
        return False
    a, b = sorted((left, right))  # symmetric: one cache entry per pair
    return bool(_worker.request("equivalent", a, b))
