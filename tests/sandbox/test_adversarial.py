"""Adversarial programs (shared/docs/code-sandbox.md §4-5) are contained: nothing leaks, the pool survives, and the
next program still runs with the right signature. Runs in the default suite, safely on a shared machine: the
dangerous programs (fork bomb, kill -1) run only after a canary proved that signals and forks are blocked.

Parametrised over the pool without namespaces and, where bubblewrap works, inside them.
"""

import os
import secrets
import socket
import subprocess

import pytest
from sandbox_helpers import bwrap_works, gone, process_tree, start_or_skip

SECRET_ENV = "RLIF_TEST_SECRET_TOKEN"
FAST_UID = 65534  # rlif.sandbox.sandbox_uid default
NEXT = ("print(sum(range(10)))", "OUT:45")  # the program every adversary is followed by


@pytest.fixture(scope="module", params=["plain", "namespaces"])
def pool(request, tmp_path_factory):
    if request.param == "namespaces" and not bwrap_works():
        pytest.skip("bubblewrap is not installed or namespaces are not permitted here")
    token = secrets.token_hex(16)
    os.environ[SECRET_ENV] = token  # what a trainer's API key looks like to its child processes
    executor = start_or_skip(use_namespaces=request.param == "namespaces")
    assert executor.layers["namespaces"].startswith("active") == (request.param == "namespaces")
    secret = tmp_path_factory.mktemp("secret") / "api_key.txt"
    secret.write_text(token)
    executor.test_token, executor.test_secret_file = token, secret
    executor.test_steady_tree = process_tree(executor)
    workers = list(executor.worker_pids)
    yield executor
    executor.close()
    del os.environ[SECRET_ENV]
    assert gone(workers), "a worker outlived close()"
    assert gone(executor.test_steady_tree), "a process of the pool outlived close()"


def contained(pool, program: str, inputs=("",), fn_name=None) -> list[str]:
    """Signatures of ``program``; then: no process left, same workers, and the next program still correct."""
    signatures = pool.run(program + f"\n# {secrets.token_hex(4)}", list(inputs), fn_name)  # never from the cache
    assert process_tree(pool) == pool.test_steady_tree, "a process was left running or a worker died"
    assert pool.run(NEXT[0], [""]) == [NEXT[1]]
    return signatures


def assert_safe_to_signal(pool):
    """Canary: signalling any process and forking must be refused before the dangerous programs may run."""
    probe = "import os\ntry:\n    os.kill(os.getppid(), 0)\n    print('SIGNALS')\nexcept OSError:\n    print('DENIED')"
    # O_ASYNC owner: a descriptor whose I/O would signal the worker (works without Landlock signal scoping)
    probe += "\nimport fcntl\ntry:\n    fcntl.fcntl(0, fcntl.F_SETOWN, os.getppid())\n    print('SIGIO')\n"
    probe += "except OSError:\n    print('DENIED')"
    if contained(pool, probe) != ["OUT:DENIED\nDENIED"]:
        pytest.fail("signals are not blocked in the sandbox; refusing to run kill/fork adversaries")
    if contained(pool, "import os\nprint(os.fork() if hasattr(os, 'fork') else 0)") != ["EXC:PermissionError"]:
        pytest.fail("fork is not blocked in the sandbox; refusing to run the fork bomb")


@pytest.mark.parametrize(
    "program",
    [
        "while True:\n    pass",
        "import time\ntime.sleep(3600)",
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "while True:\n    pass",
        "import os\nos.close(1)\nos.close(3)\nwhile True:\n    pass",  # no pipe left to see the end on
    ],
    ids=["infinite_loop", "sleep", "ignore_signals", "close_pipes_and_spin"],
)
def test_runaway_programs_time_out(pool, program):
    assert contained(pool, program, inputs=("", "")) == ["TIMEOUT", "SKIPPED"]  # one deadline per program


def test_blocking_on_stdin_ends_at_eof(pool):
    assert contained(pool, "while True:\n    input()") == ["EXC:EOFError"]
    assert contained(pool, "import os\nwhile os.read(0, 1):\n    pass\nprint('eof')", inputs=("abc",)) == ["OUT:eof"]


def test_fork_bomb_and_subprocesses_are_refused(pool):
    assert_safe_to_signal(pool)
    assert contained(pool, "import os\nwhile True:\n    os.fork()") == ["EXC:PermissionError"]
    assert contained(pool, "import subprocess\nsubprocess.run(['sh', '-c', 'echo hi'])") == ["EXC:PermissionError"]
    assert contained(pool, "import os\nprint(os.system(':(){ :|:& };:'))") == ["OUT:32512"]  # sh never started


def test_thread_bomb_is_bounded(pool):
    bomb = "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()"
    assert contained(pool, bomb)[0] in {"EXC:RuntimeError", "MEMORY", "TIMEOUT"}


@pytest.mark.parametrize(
    "program",
    ["x = bytearray(8 * 2**30)", "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"],
    ids=["one_huge_allocation", "gradual"],
)
def test_memory_hogs_hit_the_limit(pool, program):
    assert contained(pool, program) == ["MEMORY"]


def test_output_flood_is_capped(pool):
    assert contained(pool, "while True:\n    print('x' * 1000)") == ["OUTPUT_LIMIT"]


def test_invalid_utf8_output_is_a_signature(pool):
    program = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok\\n')"
    first = contained(pool, program)
    assert first == ["OUT:\udcff\udcfe ok"] and contained(pool, program) == first


@pytest.mark.parametrize(
    "target", ["os.getppid()", "1", "-1", "0"], ids=["parent_worker", "pid_1", "every_process", "own_group"]
)
def test_killing_other_processes_is_refused(pool, target):
    assert_safe_to_signal(pool)
    assert contained(pool, f"import os, signal\nos.kill({target}, signal.SIGKILL)") == ["EXC:PermissionError"]


def test_killing_through_ctypes_is_refused(pool):
    assert_safe_to_signal(pool)
    victim = subprocess.Popen(["sleep", "30"])  # ours: the one process a failure here could hit besides the pool
    try:
        program = "import ctypes, os\nkill = ctypes.CDLL(None).kill\n"
        program += f"print(kill(os.getppid(), 9), kill(-1, 9), kill({victim.pid}, 9))"
        assert contained(pool, program) == ["OUT:-1 -1 -1"]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_environment_holds_no_secrets(pool):
    program = f"import os\nprint(sorted(os.environ))\nprint(any({pool.test_token!r} in v for v in os.environ.values()))"
    signature = contained(pool, program)[0]
    assert signature.startswith("OUT:['HOME', ") and signature.endswith("]\nFalse")
    assert SECRET_ENV not in signature and "PYTHONHASHSEED" in signature


@pytest.mark.parametrize(
    "path",
    ["f'/proc/{os.getppid()}/environ'", "f'/proc/{TRAINER}/environ'", "'/proc/self/environ'", "SECRET_FILE"],
    ids=["worker_environ", "trainer_environ", "own_environ", "secret_file"],
)
def test_reading_secrets_is_refused(pool, path):
    program = (
        f"import os\nTRAINER = {os.getpid()}\nSECRET_FILE = {str(pool.test_secret_file)!r}\n"
        f"try:\n    data = open({path}, 'rb').read()\n"
        f"    print('LEAK' if {pool.test_token.encode()!r} in data else 'NO')\n"
        f"except OSError:\n    print('DENIED')"
    )
    assert contained(pool, program) in (["OUT:DENIED"], ["OUT:NO"])


def test_writing_outside_the_private_directory_is_refused(pool, tmp_path):
    targets = [tmp_path / "canary", f"/tmp/rlif-canary-{secrets.token_hex(4)}", "/dev/shm/rlif-canary"]
    program = "import sys\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w').write('x')\n    print('WROTE')\nexcept OSError:\n    print('DENIED')\n"
        for t in targets
    )
    assert contained(pool, program) == ["OUT:" + "\n".join(["DENIED"] * len(targets))]
    assert not any(os.path.exists(t) for t in targets)


def test_private_directory_is_writable_and_wiped(pool):
    write = "import os\nopen('notes.txt', 'w').write('x')\nos.mkdir('d', 0)\nprint(sorted(os.listdir()))"
    assert contained(pool, write) == ["OUT:['d', 'notes.txt']"]  # a locked directory does not stop the wipe
    assert contained(pool, "import os\nprint(os.listdir('.'))") == ["OUT:[]"]
    many = "for i in range(300):\n    open(f'f{i}', 'w').close()\nprint('done')"
    assert contained(pool, many) == ["OUT:done"]
    assert contained(pool, "import os\nprint(len(os.listdir('.')))") == ["OUT:0"]


def test_file_size_and_resource_limits_hold(pool):
    big = "with open('big', 'wb') as f:\n    for _ in range(64):\n        f.write(b'x' * 2**20)"
    assert contained(pool, big) == ["EXC:OSError"]  # EFBIG at rlif.sandbox.file_size_limit_mb
    raise_limit = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))"
    assert contained(pool, raise_limit) == ["EXC:ValueError"]
    assert contained(pool, "import ctypes\nctypes.string_at(0)") == ["SIGNAL:SIGSEGV"]


def test_network_is_unreachable(pool):
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0rlif-test-{secrets.token_hex(6)}"
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        unix.bind(name)
        unix.listen(1)
        for sock in (tcp, udp, unix):
            sock.setblocking(False)
        program = (
            "import socket\n"
            "def attempt(fn):\n"
            "    try:\n        fn()\n        print('REACHED')\n    except OSError:\n        print('DENIED')\n"
            f"attempt(lambda: socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), timeout=0.5))\n"
            f"attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
            f"('127.0.0.1', {udp.getsockname()[1]})))\n"
            f"attempt(lambda: socket.socket(socket.AF_UNIX).connect({name!r}))\n"
            "attempt(lambda: socket.create_connection(('93.184.216.34', 80), timeout=0.5))\n"
        )
        assert contained(pool, program) == ["OUT:DENIED\nDENIED\nDENIED\nDENIED"]
        for receive in (tcp.accept, lambda: udp.recv(16), unix.accept):
            with pytest.raises(BlockingIOError):
                receive()  # nothing ever arrived
    finally:
        for sock in (tcp, udp, unix):
            sock.close()


def test_always_equal_object_cannot_fake_a_result(pool):
    cheat = (
        "class E(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
        "    def __repr__(self):\n        return '7'\n"
        "def f(x):\n    return E(5)"
    )
    honest_5, honest_7 = "def f(x):\n    return 5", "def f(x):\n    return 7"
    signatures = [contained(pool, p, inputs=([1],), fn_name="f") for p in (cheat, honest_5, honest_7)]
    assert signatures == [["RET:5"], ["RET:5"], ["RET:7"]]
    assert all(type(s[0]) is str for s in signatures)  # the trusted side holds strings, never the program's objects
    opaque = "class Node:\n    pass\ndef f(x):\n    return Node()"
    assert contained(pool, opaque, inputs=([1],), fn_name="f") == ["EXC:TypeError"]  # no address-bearing repr


def test_endless_return_value_is_contained(pool):
    endless = "class L(list):\n    def __iter__(self):\n        while True:\n            yield 1\n"
    endless += "def f():\n    return L()"
    assert contained(pool, endless, inputs=([],), fn_name="f")[0] in {"MEMORY", "TIMEOUT"}


def test_hash_and_random_are_deterministic(pool):
    program = "import random\nprint(random.random(), hash('abc'), sorted({'x', 'y'}), list({'a', 'b', 'c', 'd'}))"
    first = contained(pool, program)
    assert first[0].startswith("OUT:") and all(contained(pool, program) == first for _ in range(3))
    other = start_or_skip(workers=1, use_namespaces=False)  # another worker process, another hash seed otherwise
    try:
        assert other.run(program, [""]) == first
    finally:
        other.close()


def test_nothing_persists_from_one_program_to_the_next(pool):
    plant = (
        "import os\nfor attempt in (lambda: open('../planted', 'w'), lambda: os.rename('.', '../moved')):\n"
        "    try:\n        attempt()\n        print('WROTE')\n    except OSError:\n        print('DENIED')"
    )
    assert contained(pool, plant) == ["OUT:DENIED\nDENIED"]
    assert contained(pool, "import os\nprint(os.listdir('..'))") == ["EXC:PermissionError"]
    assert all(os.listdir(worker.base_dir) == [] for worker in pool._workers)  # the host side holds nothing


def test_uid_drop_is_reported_as_it_is(pool):
    state = pool.layers["uid_drop"]
    if pool.layers["namespaces"].startswith("active"):  # bwrap maps the worker's uid to ours on the host
        expected = "unavailable: namespaced only" if os.geteuid() == 0 else f"active (uid {FAST_UID}"
        assert state.startswith(expected), state
    elif os.geteuid() != 0:
        assert state.startswith("not needed"), state
    else:  # root without namespaces: the drop is active exactly when programs run as the sandbox uid
        runs_as = contained(pool, "import os\nprint(os.geteuid())")
        assert (runs_as == [f"OUT:{FAST_UID}"]) == state.startswith("active"), (state, runs_as)


def test_a_program_cannot_pass_for_a_setup_failure_or_forge_log_lines(pool, caplog):
    """It holds the record pipe (fd 3): a "SANDBOX:" line there, or exit status 125, once made the whole record a
    worker warning, i.e. up to output_limit_bytes of forged log text per input."""
    forged = "\\nSANDBOX: x\\nINFO trainer: step 100 reward=1.0 (forged)\\n\\x1b[2J" + "A" * 5000
    program = f"import os\nos.write(3, {forged!r}.encode())\nos._exit(125)"
    with caplog.at_level("WARNING", logger="verl_rlif"):
        assert contained(pool, program) == ["EXIT:125"]
    assert not [r for r in caplog.records if "forged" in r.getMessage() or "\x1b" in r.getMessage()]
