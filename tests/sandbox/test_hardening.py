"""Attack programs for the classes of issue 16, run through the real pool (without and, where bubblewrap works,
inside namespaces): no residue of an earlier program in a child's memory, bounded disk and memory outside the
address-space limit, no capabilities, no file watches, hidden host metadata where namespaces exist, refused new
system calls, no escape from the death signal; and ordinary solutions still run and keep their vote keys."""

import json
import os
import re
import secrets
import threading
import time

import pytest
from ordinary_solutions import SOLUTIONS, vote_lines
from sandbox_helpers import bwrap_works, descendants, start_or_skip

from verl_rlif.sandbox.signature import behaviour_key

FILE_MB = 4


@pytest.fixture(scope="module", params=["plain", "namespaces"])
def pool(request):
    if request.param == "namespaces" and not bwrap_works():
        pytest.skip("bubblewrap is not installed or namespaces are not permitted here")
    executor = start_or_skip(
        use_namespaces=request.param == "namespaces", workers=1, file_size_limit_mb=FILE_MB, timeout_per_input_s=5.0
    )
    executor.test_mode = request.param
    yield executor
    executor.close()


def run(pool, program: str, stdin: str = "") -> str:
    return pool.run(program + f"\n# {secrets.token_hex(4)}", [stdin])[0]  # never from the cache


# ------------------------------------------------------------------ no residue
def _memory_of(pid: int) -> bytes:
    """Every readable mapping of ``pid`` (read from outside, as root: the program cannot hide anything)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "r" not in perms or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:  # [vvar] and guard pages
                pass
    return b"".join(chunks)


def test_no_child_holds_an_earlier_programs_data(pool):
    """Program A prints a marker many times (kept in no source: built reversed at run time) and reads another from
    stdin; then program B, on the same worker, sleeps while its whole address space is read: neither marker, nor
    A's source, may be there. B's own marker must be (the scan works)."""
    printed, read, own = (secrets.token_hex(16) for _ in range(3))
    program_a = f"import sys\ndata = sys.stdin.read()\nprint(''.join(reversed({printed[::-1]!r})) * 400, len(data))"
    for _ in range(3):
        assert run(pool, program_a, read * 50).startswith("OUT:sha256:")
    steady = {pid for worker in pool.worker_pids for pid in descendants(worker)}
    memory: list[bytes] = []

    def scan() -> None:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            new = {pid for worker in pool.worker_pids for pid in descendants(worker)} - steady
            if new:
                time.sleep(0.3)  # B has read its request and is sleeping
                memory.extend(_memory_of(pid) for pid in new)
                return
            time.sleep(0.01)

    scanner = threading.Thread(target=scan)
    scanner.start()
    assert run(pool, f"import time\ntime.sleep(1.5)\nprint({own!r})") == f"OUT:{own}"
    scanner.join()
    assert memory, "program B was never seen running"
    image = b"".join(memory)
    assert own.encode() in image  # the positive control
    for marker in (printed, read, printed[::-1]):
        assert marker.encode() not in image, "a child's memory holds an earlier program's data"


# ------------------------------------------------------------------ bounded resources
def test_total_bytes_written_are_bounded_not_per_file(pool):
    program = (
        "import os\ntotal = 0\ntry:\n    for i in range(10000):\n        with open(f'f{i}', 'wb') as f:\n"
        "            for _ in range(4):\n                total += f.write(b'x' * 2**18)\nexcept OSError as e:\n"
        "    print(type(e).__name__, total)\n"
    )
    name, total = run(pool, program)[4:].split()
    assert int(total) <= FILE_MB * 2**20 and name in {"OSError", "PermissionError"}
    # fallocate: reserving far beyond the limit in one call is refused, not granted and counted later
    fallocate = (
        "import os\nfd = os.open('big', os.O_RDWR | os.O_CREAT)\nos.posix_fallocate(fd, 0, 256 * 2**20)\nprint('ok')"
    )
    assert run(pool, fallocate) in {"EXC:OSError", "EXC:PermissionError"}


def test_memfds_and_pipe_resizing_are_refused(pool):
    assert run(pool, "import os\nos.memfd_create('x')") == "EXC:PermissionError"
    resize = "import os, fcntl\nr, w = os.pipe()\nfcntl.fcntl(w, 1031, 256 * 2**20)"  # F_SETPIPE_SZ
    assert run(pool, resize) == "EXC:PermissionError"
    sockbuf = "import socket\na, b = socket.socketpair()\na.setsockopt(socket.SOL_SOCKET, 32, 2**28)"  # SO_SNDBUFFORCE
    assert run(pool, sockbuf) in {"EXC:PermissionError", "EXC:OSError"}


CAPS = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nhead = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
    "data = (ctypes.c_uint32 * 6)()\nassert libc.capget(head, data) == 0\n"
    "bounding = [c for c in range(41) if libc.prctl(23, c, 0, 0, 0) == 1]\nprint(list(data), bounding)"
)


def test_children_hold_no_capability(pool):
    effective_etc, bounding = run(pool, CAPS)[4:].split("] [")
    assert effective_etc == "[0, 0, 0, 0, 0, 0"
    if os.geteuid() == 0 and pool.test_mode == "plain":  # root with CAP_SETPCAP: the bounding set is emptied too
        assert bounding == "]"


# ------------------------------------------------------------------ visibility
def test_file_watches_are_refused(pool):
    watch = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fds = [libc.inotify_init1(0), libc.fanotify_init(0, 0)]\nprint(fds, ctypes.get_errno())"
    )
    assert run(pool, watch) == "OUT:[-1, -1] 1"
    dnotify = "import fcntl, os\nfd = os.open('.', os.O_RDONLY)\nfcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_CREATE)"
    assert run(pool, dnotify) == "EXC:PermissionError"


def test_host_metadata_is_hidden_inside_namespaces(pool):
    probe = "import os\nfor p in ('/etc/shadow', '/root', '/home', '/tmp'):\n    print(p, os.path.lexists(p))"
    seen = dict(line.split() for line in run(pool, probe)[4:].splitlines())
    if pool.test_mode == "namespaces":
        assert seen["/etc/shadow"] == "False" and seen["/home"] == "False"
    else:  # documented: without a mount namespace, stat of any path stays visible (contents and listings do not)
        assert seen["/etc/shadow"] == str(os.path.lexists("/etc/shadow"))


# ------------------------------------------------------------------ default deny, death signal
def test_new_and_unknown_system_calls_are_refused(pool):
    program = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nout = []\nfor nr in (467, 468, 469, 470, 600):\n"
        "    out.append((libc.syscall(nr, -100, b'.', 0, 0, 0), ctypes.get_errno()))\nprint(out)"
    )
    # open_tree_attr, file_getattr, file_setattr: EPERM (named); 470, 600: ENOSYS (no table knows them)
    assert run(pool, program) == "OUT:[(-1, 1), (-1, 1), (-1, 1), (-1, 38), (-1, 38)]"


def test_the_death_signal_cannot_be_cleared(pool):
    program = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.prctl(1, 0, 0, 0, 0)\n"
        "e = ctypes.get_errno()\nsig = ctypes.c_int()\nlibc.prctl(2, ctypes.byref(sig), 0, 0, 0)\n"
        "print(r, e, sig.value)"
    )
    assert run(pool, program) == "OUT:-1 1 9"
    subreaper = "import ctypes\nprint(ctypes.CDLL(None).prctl(36, 1, 0, 0, 0))"  # PR_SET_CHILD_SUBREAPER
    assert run(pool, subreaper) == "OUT:-1"


# ------------------------------------------------------------------ ordinary programs still work
def _expected_ok(signature: str, expected) -> bool:
    if expected is None:
        return not signature.startswith("OUT:")
    return signature.startswith("OUT:") if expected == "" else signature == f"OUT:{expected}"


def _creates_files(pool) -> bool:
    """False where no size-limited filesystem exists (no bubblewrap, no CAP_SYS_ADMIN): no file may be created."""
    return not pool.layers["write_limit"].startswith("active (no files")


def test_ordinary_solutions_run_under_every_layer(pool):
    for name, program, inputs, expected in SOLUTIONS:
        if name == "files_in_cwd" and not _creates_files(pool):
            expected = [None] * len(inputs)  # documented: writing files needs a size-limited filesystem
        signatures = pool.run(program, inputs)
        assert all(map(_expected_ok, signatures, expected)), (name, signatures)


def test_vote_keys_of_ordinary_solutions_are_those_recorded_before_the_change(pool):
    """Keys recorded with main's sandbox (denylist filter) by ``verl-rlif vote --task code``; the one program that
    differs is the judge-style ``setrlimit(RLIMIT_STACK, (2**29, RLIM_INFINITY))`` line, which main refused with
    ValueError (no key) and which now works as on a judge."""
    from verl_rlif import sandbox
    from verl_rlif.answers import get_extractor

    before = json.load(open(os.path.join(os.path.dirname(__file__), "vote_keys_before.json")))["keys"]
    sandbox.configure(pool.settings)
    code = get_extractor("code")
    try:
        now = {line["group"]: code.extract(line["response"], line["extra_info"]) for line in vote_lines()[::2]}
    finally:
        sandbox.shutdown()
    changed = {name for name in before if before[name] != now[name]}
    expected = {"deep_recursion"} | (set() if _creates_files(pool) else {"files_in_cwd"})
    assert changed == expected and before["deep_recursion"] is None
    assert now["deep_recursion"] == behaviour_key(["OUT:50000", "OUT:10"])
    assert all(re.fullmatch(r"code:[0-9a-f]{32}", key) for key in now.values())
