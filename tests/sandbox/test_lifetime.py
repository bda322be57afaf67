"""Nothing outlives its owner: when the process that owns a pool (a reward worker, ``verl-rlif vote``) dies by
SIGKILL mid-run, every worker and program dies within a second, and the next pool that starts removes the session
directory it left; a live pool's directory is never touched. Each owner runs in a subprocess with its own
``TMPDIR`` (so only this test's directories are ever looked at) and is killed by this test."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from sandbox_helpers import alive, bwrap_works, descendants, gone

from verl_rlif.sandbox import local

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKERS = 2
POOL_OWNER = textwrap.dedent(
    """
    import sys, threading, time
    from verl_rlif.config import SandboxConfig
    from verl_rlif.sandbox.local import LocalExecutor
    pool = LocalExecutor(SandboxConfig(workers=2, timeout_per_input_s=60, use_namespaces=sys.argv[1] == "ns"))
    pool.start()
    for i in range(2):
        threading.Thread(target=pool.run, args=(f"while True:\\n    pass\\n# {i}", [""]), daemon=True).start()
    print("started", flush=True)
    time.sleep(600)
    """
)


def _environment(tmp_path) -> dict:
    return {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": ROOT}


def _cli_owner(tmp_path, namespaces: bool) -> list[str]:
    info = {"inputs": ["1\n"]}
    lines = [
        {"group": i, "response": f"```python\nwhile True:\n    pass\n# {i}\n```", "extra_info": info} for i in range(4)
    ]
    source = tmp_path / "spin.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli = "import sys\nfrom verl_rlif.cli import main\nsys.exit(main(sys.argv[1:]))"
    settings = [f"workers={WORKERS}", "timeout_per_input_s=60", f"use_namespaces={str(namespaces).lower()}"]
    return [
        sys.executable,
        "-c",
        cli,
        "vote",
        "--task",
        "code",
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
    ] + [arg for setting in settings for arg in ("--sandbox", setting)]


def _wait_for_programs(owner: subprocess.Popen, per_worker: int) -> set[int]:
    """The owner's process tree once every worker runs a program (collector, template, program; bwrap adds two)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tree = descendants(owner.pid)
        if len(tree) >= WORKERS * per_worker:
            time.sleep(0.3)
            return descendants(owner.pid)
        assert owner.poll() is None, owner.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    pytest.fail(f"the programs never started: {descendants(owner.pid)}")


@pytest.mark.parametrize("namespaces", [False, True], ids=["plain", "namespaces"])
@pytest.mark.parametrize("owner_kind", ["pool", "cli"])
def test_sigkill_of_the_owner_leaves_no_process_and_the_next_pool_removes_its_directory(
    tmp_path, owner_kind, namespaces
):
    if namespaces and not bwrap_works():
        pytest.skip("bubblewrap is not installed or namespaces are not permitted here")
    if owner_kind == "pool":
        command = [sys.executable, "-c", POOL_OWNER, "ns" if namespaces else "plain"]
    else:
        command = _cli_owner(tmp_path, namespaces)
    owner = subprocess.Popen(command, env=_environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        tree = _wait_for_programs(owner, 5 if namespaces else 3)
        sessions = [name for name in os.listdir(tmp_path) if name.startswith(f"rlif-sandbox-{owner.pid}-")]
        assert len(sessions) == 1
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert gone(tree, within_s=1.0), f"still running 1 s after the owner died: {[p for p in tree if alive(p)]}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        owner.stdout.close()
        owner.stderr.close()
    assert (tmp_path / sessions[0]).exists()  # nothing ran its clean-up: the next pool must
    nxt = [
        sys.executable,
        "-c",
        "import os, sys\nfrom verl_rlif.sandbox.local import _session_dir\nprint(_session_dir())",
    ]
    done = subprocess.run(nxt, env=_environment(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / sessions[0]).exists()


def test_a_live_owners_directory_is_never_removed(tmp_path):
    """A directory whose owner still runs (its pid alive) or still holds the lock (a pid this namespace cannot see,
    or a forked child alive) stays; only one with a dead pid and a free lock goes."""
    import fcntl

    live = tmp_path / f"rlif-sandbox-{os.getpid()}-live"
    held = tmp_path / "rlif-sandbox-999999999-held"  # no such pid here, but someone holds the lock
    dead = tmp_path / "rlif-sandbox-999999998-dead"
    for path in (live, held, dead):
        (path / "worker0-x" / "run1").mkdir(parents=True)
    lock = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert local.remove_stale_sessions(str(tmp_path)) == [str(dead)]
    finally:
        os.close(lock)
    assert live.exists() and held.exists() and not dead.exists()
