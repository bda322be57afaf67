"""Shared fixtures for the sandbox tests: small, fast pools and process-tree inspection."""

import os
import shutil
import subprocess
import time

import pytest

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.executor import SandboxUnavailable
from verl_rlif.sandbox.local import LocalExecutor

FAST = {"workers": 2, "timeout_per_input_s": 1.0, "memory_limit_mb": 256, "output_limit_bytes": 65536}


def bwrap_works() -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    probe = subprocess.run([bwrap, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def start_or_skip(**settings) -> LocalExecutor:
    """A started pool, or a skip naming why the required isolation is missing on this machine."""
    executor = LocalExecutor(SandboxConfig(**{**FAST, **settings}))
    try:
        executor.start()
    except SandboxUnavailable as error:
        pytest.skip(f"sandbox layers missing here: {error}")
    return executor


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_tree(executor: LocalExecutor) -> set[int]:
    """The worker processes and everything under them."""
    pids = set(executor.worker_pids)
    for pid in list(pids):
        pids |= descendants(pid)
    return pids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped) is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def gone(pids, within_s: float = 5.0) -> bool:
    """Whether every pid has exited within ``within_s`` (children of a killed worker die by their parent-death
    signal, which the kernel delivers asynchronously)."""
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
