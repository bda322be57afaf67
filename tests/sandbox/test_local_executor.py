"""The local pool: signatures in both modes, fail-closed start-up, thread safety, restarts, cache, clean shutdown."""

import contextlib
import logging
import os
import signal
import sys
import threading
import time

import pytest
from sandbox_helpers import FAST, alive, descendants, gone, start_or_skip

from verl_rlif import sandbox
from verl_rlif.answers.code import CodeExtractor
from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox import local
from verl_rlif.sandbox.executor import SandboxUnavailable, encode_inputs
from verl_rlif.sandbox.local import LocalExecutor
from verl_rlif.sandbox.signature import SANDBOX_ERROR, behaviour_key


@contextlib.contextmanager
def configured(executor):
    """Make ``executor`` the process's sandbox (what the extractor uses) for a while."""
    saved = sandbox._settings, sandbox._executor
    sandbox._settings, sandbox._executor = executor.settings, executor
    try:
        yield
    finally:
        sandbox._settings, sandbox._executor = saved


@pytest.fixture(scope="module")
def pool():
    executor = start_or_skip(use_namespaces=False)
    yield executor
    executor.close()


def test_stdin_and_function_call_signatures(pool):
    assert pool.run("a, b = map(int, input().split())\nprint(a + b)", ["1 2", "10 -3\n"]) == ["OUT:3", "OUT:7"]
    assert pool.run("print(1 / 3)", [""]) == ["OUT:0.333333"]
    program = "def f(xs, k=1):\n    return {'sum': sum(xs) * k, 'sorted': tuple(sorted(xs))}"
    assert pool.run(program, [[[3, 1]], {"xs": [2], "k": 5}], fn_name="f") == [
        'RET:{"dict":[["sorted",[1,3]],["sum",4]]}',
        'RET:{"dict":[["sorted",[2]],["sum",10]]}',
    ]
    assert pool.run("import sys\nprint(sys.argv, __name__)", [""]) == ["OUT:[''] __main__"]


def test_inputs_are_truncated_and_a_timeout_skips_the_rest():
    executor = start_or_skip(use_namespaces=False, workers=1, max_inputs=3, timeout_per_input_s=0.5)
    try:
        slow_on_two = "import time\nx = int(input())\nif x == 2:\n    time.sleep(60)\nprint(x)"
        assert executor.run(slow_on_two, ["1", "2", "3", "4"]) == ["OUT:1", "TIMEOUT", "SKIPPED"]
    finally:
        executor.close()


def test_startup_logs_the_layers(caplog):
    with caplog.at_level(logging.INFO, logger="verl_rlif.sandbox.local"):
        executor = start_or_skip(use_namespaces=False, workers=1)
    executor.close()
    line = next(r.getMessage() for r in caplog.records if "verl-rlif sandbox (local" in r.getMessage())
    assert "active: spawned_workers, session, rlimits, env_allowlist, private_dir" in line
    assert "namespaces (off (rlif.sandbox.use_namespaces=false))" in line


def test_missing_required_layer_refuses_and_leaves_nothing():
    before = set(os.listdir(local._session_dir()))  # where the workers' private directories go
    executor = LocalExecutor(SandboxConfig(**FAST, use_namespaces=False, required_layers=("seccomp", "namespaces")))
    with pytest.raises(SandboxUnavailable, match=r"required isolation layer\(s\) \['namespaces'\].*allow_insecure"):
        executor.start()
    assert executor.worker_pids == [] and set(os.listdir(local._session_dir())) == before


def test_insecure_opt_out_runs_and_warns(caplog):
    settings = SandboxConfig(**{**FAST, "workers": 1}, use_namespaces=False, required_layers=("namespaces",))
    executor = LocalExecutor(SandboxConfig(**{**settings.__dict__, "allow_insecure": True}))
    with caplog.at_level(logging.WARNING, logger="verl_rlif.sandbox.local"):
        executor.start()
    try:
        assert any("INSECURE" in r.getMessage() and "namespaces" in r.getMessage() for r in caplog.records)
        assert executor.run("print('still isolated otherwise')", [""]) == ["OUT:still isolated otherwise"]
        assert executor.layers["seccomp"].startswith("active")
    finally:
        executor.close()


def test_many_threads_share_the_pool(pool):
    results, errors = {}, []

    def worker(t):
        try:
            for i in range(15):
                results[(t, i)] = pool.run(f"print({t} * 100 + {i})", [""])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == {(t, i): [f"OUT:{t * 100 + i}"] for t in range(6) for i in range(15)}


def test_extract_many_keeps_order(pool):
    code = CodeExtractor()
    items = [(f"```python\nprint(input() * {i})\n```", {"inputs": ["ab"]}) for i in range(12)]
    with configured(pool):
        keys = code.extract_many(items)
    assert keys == [behaviour_key(["OUT:" + "ab" * i]) for i in range(12)]


def test_killed_worker_is_restarted(pool):
    killed, old_dirs = pool.worker_pids, [w.base_dir for w in pool._workers]
    for pid in killed:
        os.killpg(pid, signal.SIGKILL)
    code = CodeExtractor()
    items = [(f"```python\nprint({i})\n```", {"inputs": [""]}) for i in range(4)]
    with configured(pool):  # restarts happen on the extractor's short-lived threads
        assert code.extract_many(items) == [code.extract(*item) for item in items]
        assert code.extract_many(items) == [behaviour_key([f"OUT:{i}"]) for i in range(4)]  # the new workers ran them
    time.sleep(0.5)  # the threads that restarted them have ended: the workers must outlive them
    assert all(w.proc.poll() is None for w in pool._workers) and not set(killed) & set(pool.worker_pids)
    assert not any(os.path.exists(d) for d in old_dirs)  # a dead worker's directory goes with it


def test_workers_outlive_the_thread_that_started_them():
    executor = LocalExecutor(SandboxConfig(**{**FAST, "workers": 1}, use_namespaces=False, allow_insecure=True))
    starter = threading.Thread(target=executor.start)
    starter.start()
    starter.join()
    try:
        time.sleep(0.5)  # a parent-death signal tied to that thread would have fired by now
        assert executor._workers[0].proc.poll() is None
        assert executor.run("print(1)", [""]) == ["OUT:1"]
    finally:
        executor.close()


def test_identical_requests_come_from_the_cache(pool):
    program = "import os\nprint(os.urandom(8).hex())"
    first = pool.run(program, [""])
    assert pool.run(program, [""]) == first
    assert pool.run(program + "\n", [""]) != first  # another program really runs


def test_the_sandbox_user_can_pass_through_to_its_run_directory(pool):
    # as root, a worker drops each program to rlif.sandbox.sandbox_uid, which needs execute on every ancestor of the
    # run directory (a 0700 session directory once made every program a SANDBOX_ERROR on a GPU node); the worker
    # opens its own base directory (0711) when it drops
    path = os.path.dirname(pool._workers[0].base_dir)
    while path != os.path.dirname(path):
        assert os.stat(path).st_mode & 0o001, f"{path} is not traversable by other users"
        path = os.path.dirname(path)


def test_close_removes_processes_and_directories():
    executor = start_or_skip(use_namespaces=False, workers=2)
    pids = list(executor.worker_pids)
    dirs = [w.base_dir for w in executor._workers]
    assert all(os.path.isdir(d) for d in dirs)
    for pid, path in zip(pids, dirs, strict=True):  # argv is world-readable: the configuration goes by stdin
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            assert os.path.basename(path).encode() not in cmdline.read()
    executor.close()
    assert gone(pids) and not any(os.path.exists(d) for d in dirs)


def test_inputs_are_checked():
    with pytest.raises(TypeError, match="stdin inputs must be strings"):
        encode_inputs([1], None)
    with pytest.raises(TypeError, match="argument lists"):
        encode_inputs(["1"], "f")
    assert encode_inputs([[1, "a"], {"k": 2}], "f") == ['[1, "a"]', '{"k": 2}']


def test_module_level_executor_follows_configure():
    settings = SandboxConfig(**{**FAST, "workers": 1}, use_namespaces=False)
    sandbox.configure(settings)
    try:
        first = sandbox.get_executor()
        assert sandbox.get_executor() is first and first.settings == settings
        assert sandbox.current_settings() == settings
        sandbox.configure(SandboxConfig(**{**settings.__dict__, "max_inputs": 2}))
        assert sandbox.get_executor() is not first and first.worker_pids == []
    finally:
        sandbox.shutdown()
        sandbox.configure(SandboxConfig())


def test_a_forked_process_gets_its_own_workers():
    sandbox.configure(SandboxConfig(**{**FAST, "workers": 1}, use_namespaces=False))
    try:
        parent_workers = sandbox.get_executor().worker_pids
        pid = os.fork()
        if pid == 0:  # e.g. a data-loader worker forked from a process that already used the sandbox
            ok = sandbox.get_executor().run("print(5)", [""]) == ["OUT:5"]
            ok = ok and not set(sandbox.get_executor().worker_pids) & set(parent_workers)
            sandbox.shutdown()
            os._exit(0 if ok else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert all(alive(p) for p in parent_workers) and sandbox.get_executor().run("print(6)", [""]) == ["OUT:6"]
    finally:
        sandbox.shutdown()
        sandbox.configure(SandboxConfig())


def test_a_fork_dropping_the_inherited_pool_leaves_the_parents_workers():
    executor = start_or_skip(use_namespaces=False, workers=1)
    try:
        workers, dirs = list(executor.worker_pids), [w.base_dir for w in executor._workers]
        pid = os.fork()
        if pid == 0:  # the child's copy is closed and garbage-collected, as when a forked process drops it
            executor.close()
            import gc

            gc.collect()
            os._exit(0)
        os.waitpid(pid, 0)
        assert all(alive(p) for p in workers) and all(os.path.isdir(d) for d in dirs)
        assert executor.run("print(2)", [""]) == ["OUT:2"]
    finally:
        executor.close()


def test_a_forked_child_that_exits_without_cleaning_up_leaves_nothing_in_tmp():
    sandbox.configure(SandboxConfig(**{**FAST, "workers": 1}, use_namespaces=False))
    try:
        sandbox.get_executor()
        pid = os.fork()
        if pid == 0:
            sandbox.get_executor().run("print(1)", [""])
            os._exit(0)  # as multiprocessing and data-loader workers end: no atexit, no finalizers
        os.waitpid(pid, 0)
        root = os.path.dirname(local._session_dir())
        assert not [name for name in os.listdir(root) if name.startswith(f"rlif-sandbox-{pid}-")]
        left = [name for name in os.listdir(local._session_dir()) if name.startswith(f"rlif-sandbox-{pid}-")]
        assert len(left) == 1  # inside this process's directory, which goes when this process exits
    finally:
        sandbox.shutdown()
        sandbox.configure(SandboxConfig())


def test_a_worker_that_cannot_restart_gives_sandbox_error_not_an_exception(monkeypatch):
    executor = start_or_skip(use_namespaces=False, workers=1)
    try:
        os.killpg(executor.worker_pids[0], signal.SIGKILL)
        executor._workers[0].proc.wait()

        def no_space(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(local.tempfile, "mkdtemp", no_space)
        assert executor.run("print(3)", [""]) == [SANDBOX_ERROR]
        monkeypatch.undo()
        assert executor.run("print(3)", [""]) == ["OUT:3"]  # not cached: the next try really runs
    finally:
        executor.close()


def make_deep_tree(path: str, depth: int) -> None:
    """``depth`` nested directories under ``path`` (by descriptor: no path grows too long), a small file at the end."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    os.close(fd)


def test_a_tree_deeper_than_the_recursion_limit_is_wiped_and_a_killed_worker_comes_back():
    """``mkdir d; chdir d`` past Python's recursion limit once broke every recursive clean-up: data stayed behind,
    and after a worker restart every run raised RecursionError."""
    depth = sys.getrecursionlimit() + 100
    deep = f"import os\nfor i in range({depth}):\n    os.mkdir('d'); os.chdir('d')\nopen('f', 'w').write('x')\n"
    executor = start_or_skip(use_namespaces=False, workers=1)
    try:
        worker = executor._workers[0]
        assert executor.run(deep + "print('deep')", [""]) == ["OUT:deep"]
        assert os.listdir(worker.base_dir) == []  # the worker's own wipe reached the bottom
        old_dir, old_pid = worker.base_dir, executor.worker_pids[0]
        make_deep_tree(old_dir, depth)  # what a worker killed mid-run (OOM killer, deadline) leaves behind
        os.killpg(old_pid, signal.SIGKILL)
        assert executor.run("print(7)", [""]) == ["OUT:7"]  # restarted; the trusted side removed the old tree
        assert not os.path.exists(old_dir)
    finally:
        executor.close()


def test_a_worker_in_use_during_close_and_restart_is_queued_once():
    """close() while a request runs, then start(): the in-flight request must not queue its worker a second time
    (two threads would then talk to one worker at once)."""
    executor = start_or_skip(use_namespaces=False, workers=1, timeout_per_input_s=3.0)
    try:
        result = []
        thread = threading.Thread(target=lambda: result.extend(executor.run("import time\ntime.sleep(1)", [""])))
        thread.start()
        old = executor._workers[0]
        deadline = time.monotonic() + 10
        while not descendants(executor.worker_pids[0]) and time.monotonic() < deadline:  # the program runs
            time.sleep(0.01)
        executor.close()
        executor.start()
        thread.join()
        assert result == [SANDBOX_ERROR] and executor._idle.qsize() == 1
        assert old.proc is None and old.base_dir is None  # the in-flight thread closed the old worker
        assert executor.run("print(5)", [""]) == ["OUT:5"]
    finally:
        executor.close()
