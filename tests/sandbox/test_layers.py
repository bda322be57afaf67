"""The seccomp and Landlock layers on their own: syscall tables, the assembled filter, and their effect in a fork."""

import ctypes
import fcntl
import os
import resource
import socket
import struct
import subprocess
import sys
import threading

import pytest
from sandbox_helpers import gone

from verl_rlif.sandbox import landlock, seccomp


@pytest.mark.parametrize("arch", seccomp.ARCHES)
def test_filter_assembles_for_each_architecture(arch):
    program = seccomp.filter_program(arch)
    instructions = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert instructions[0] == (0x20, 0, 0, 4)  # load the architecture first
    assert instructions[1][3] == seccomp.AUDIT_ARCH[arch]
    returns = {k for code, _, _, k in instructions if code == 0x06}
    assert returns == {seccomp.RET_ALLOW, seccomp.RET_KILL_PROCESS, seccomp.RET_ERRNO | 1, seccomp.RET_ERRNO | 38}
    with pytest.raises(OSError, match="no seccomp syscall table"):
        seccomp.filter_program("mips")


def in_fork(check) -> int:
    """Exit code of ``check()`` (an int) run in a forked child; 99 if it raised."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(check())
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def refused(fn) -> bool:
    try:
        fn()
    except PermissionError:
        return True
    return False


@pytest.mark.skipif(seccomp.machine() is None, reason="no syscall table for this machine")
def test_filter_blocks_processes_sockets_signals_but_not_threads():
    def check() -> int:
        seccomp.Filter().install()
        ran = []
        thread = threading.Thread(target=lambda: ran.append(1))
        thread.start()
        thread.join()
        blocked = [
            refused(os.fork),
            refused(socket.socket),
            refused(lambda: os.kill(os.getpid(), 0)),
            refused(os.setsid),
            refused(lambda: os.execv("/bin/true", ["true"])),
        ]
        socket.socketpair()  # unix pairs reach nothing and stay allowed (asyncio needs them)
        os.sched_setaffinity(0, os.sched_getaffinity(0))  # its own CPUs stay its business
        fcntl.fcntl(0, fcntl.F_GETFL)
        return 0 if all(blocked) and ran == [1] else 1

    assert in_fork(check) == 0


@pytest.mark.skipif(seccomp.machine() is None, reason="no syscall table for this machine")
def test_filter_blocks_signals_by_io_ownership_other_processes_and_host_ipc():
    """Without Landlock signal scoping (ABI < 6, Linux < 6.12), F_SETOWN + F_SETSIG + O_ASYNC would deliver any
    signal to any pid the uid may signal; affinity, I/O priority and SysV/POSIX IPC reach other processes."""
    libc = ctypes.CDLL(None, use_errno=True)
    number = seccomp.SYSCALLS[seccomp.machine()]

    def check() -> int:
        seccomp.Filter().install()
        reader, _ = os.pipe()
        blocked = [
            refused(lambda: fcntl.fcntl(reader, fcntl.F_SETOWN, os.getppid())),
            refused(lambda: fcntl.fcntl(reader, 10, 9)),  # F_SETSIG
            refused(lambda: fcntl.fcntl(reader, 15, b"\0" * 8)),  # F_SETOWN_EX
            refused(lambda: fcntl.ioctl(reader, 0x8901, struct.pack("i", os.getppid()))),  # FIOSETOWN
            refused(lambda: fcntl.ioctl(reader, 0x8902, struct.pack("i", os.getppid()))),  # SIOCSPGRP
            refused(lambda: os.sched_setaffinity(os.getppid(), {0})),
        ]
        raw = {name: libc.syscall(number[name], 0, 0, 0, 0) for name in ("ioprio_set", "shmget", "semget", "msgget")}
        raw["mq_open"] = libc.syscall(number["mq_open"], b"/rlif-test", 0, 0, 0)
        return 0 if all(blocked) and all(r == -1 for r in raw.values()) and ctypes.get_errno() == 1 else 1

    assert in_fork(check) == 0


@pytest.mark.skipif(seccomp.machine() is None, reason="no syscall table for this machine")
def test_filter_blocks_file_metadata_changes_but_not_ftruncate(tmp_path):
    """Landlock does not mediate mode, owner, times, xattrs, inode flags or (ABI < 3) truncate(): a program running
    as root or as the trainer's uid could otherwise change them on any file it can name."""
    victim = tmp_path / "victim"
    victim.write_text("host data")
    victim.chmod(0o600)
    before = victim.stat()
    number = seccomp.SYSCALLS[seccomp.machine()]
    libc = ctypes.CDLL(None, use_errno=True)

    def check() -> int:
        seccomp.Filter().install()
        fd = os.open(victim, os.O_RDONLY)
        blocked = [
            refused(lambda: os.chmod(victim, 0o4777)),
            refused(lambda: os.chmod(victim, 0o777, follow_symlinks=False)),
            refused(lambda: os.chown(victim, 65534, 65534)),
            refused(lambda: os.utime(victim, (0, 0))),
            refused(lambda: os.setxattr(victim, "user.rlif", b"1")),
            refused(lambda: os.removexattr(victim, "user.rlif")),
            refused(lambda: os.truncate(victim, 0)),
            refused(lambda: fcntl.ioctl(fd, seccomp.FS_IOC_SETFLAGS, struct.pack("l", 0x10))),  # chattr +i
            refused(lambda: fcntl.ioctl(fd, seccomp.FS_IOC_FSSETXATTR, b"\0" * 28)),
        ]
        newer = [libc.syscall(number[name], -100, b"x", 0, 0, 0) for name in ("fchmodat2", "setxattrat")]
        own = os.open(tmp_path / "own", os.O_RDWR | os.O_CREAT, 0o600)  # the program's own files stay its own
        os.write(own, b"12345")
        os.ftruncate(own, 2)
        return 0 if all(blocked) and newer == [-1, -1] and ctypes.get_errno() == 1 and os.fstat(own).st_size == 2 else 1

    assert in_fork(check) == 0
    after = victim.stat()
    assert victim.read_text() == "host data"
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


@pytest.mark.skipif(seccomp.machine() is None or landlock.abi_version() < 1, reason="no seccomp table or Landlock")
def test_io_ownership_signals_reach_no_process_below_landlock_abi_6(monkeypatch):
    victim = subprocess.Popen(["sleep", "30"])  # our own child: the only process the attack could hit
    monkeypatch.setattr(landlock, "abi_version", lambda: 5)  # as on Linux < 6.12: no signal scoping
    ruleset, flt = landlock.Ruleset([sys.prefix, sys.base_prefix, *landlock.SYSTEM_READ_PATHS]), seccomp.Filter()

    def attack() -> int:
        seccomp.set_no_new_privs()
        ruleset.restrict_self()
        flt.install()
        reader, writer = os.pipe()
        for set_up in (
            lambda: fcntl.fcntl(reader, fcntl.F_SETOWN, victim.pid),
            lambda: fcntl.fcntl(reader, 10, 9),
            lambda: fcntl.fcntl(reader, fcntl.F_SETFL, fcntl.fcntl(reader, fcntl.F_GETFL) | os.O_ASYNC),
        ):
            try:
                set_up()
            except OSError:
                pass
        os.write(writer, b"x")
        return 0

    try:
        assert in_fork(attack) == 0
        with pytest.raises(subprocess.TimeoutExpired):
            victim.wait(timeout=0.3)
    finally:
        victim.kill()
        victim.wait()
        ruleset.close()


@pytest.mark.skipif(landlock.abi_version() < 1, reason="Landlock is not available in this kernel")
def test_landlock_allows_only_its_paths(tmp_path):
    private, outside = tmp_path / "private", tmp_path / "outside"
    private.mkdir()
    outside.mkdir()
    ruleset = landlock.Ruleset([os.path.dirname(os.__file__)])

    def check() -> int:
        seccomp.set_no_new_privs()  # Landlock needs it
        ruleset.restrict_self([str(private)])
        (private / "ok").write_text("x")
        os.listdir(os.path.dirname(os.__file__))
        denied = [
            refused(lambda: (outside / "no").write_text("x")),
            refused(lambda: os.listdir(tmp_path)),
            refused(lambda: open("/etc/hostname").read()),
        ]
        return 0 if all(denied) else 1

    assert in_fork(check) == 0
    assert (private / "ok").exists() and not (outside / "no").exists()

    def other_child() -> int:  # the private rule was the first child's: the shared ruleset did not widen
        seccomp.set_no_new_privs()
        ruleset.restrict_self()
        return 0 if refused(lambda: (private / "later").write_text("x")) else 1

    assert in_fork(other_child) == 0 and not (private / "later").exists()
    ruleset.close()


def test_sandbox_imports_no_verl_torch_or_ray():
    # the workers fork from a small, stdlib-only interpreter; the trusted side must not need verl either
    code = (
        "import sys, verl_rlif.sandbox.local, verl_rlif.sandbox.remote, verl_rlif.sandbox.zygote\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'verl', 'ray', 'torch', 'numpy', 'transformers'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr


def test_a_failed_child_setup_never_runs_the_program(tmp_path):
    from verl_rlif.sandbox.zygote import Zygote

    config = {"base_dir": str(tmp_path), "float_digits": 6, "output_limit_bytes": 4096}
    zygote = Zygote(config)
    zygote.limits = [(resource.RLIMIT_NOFILE, 2**62, 2**62)]  # above any hard limit: setrlimit fails in the child
    marker = tmp_path.parent / f"{tmp_path.name}-ran"
    program = {"source": f"open({str(marker)!r}, 'w').close()\nprint('ran')", "fn_name": None}
    assert zygote.run_one(program, "", 5.0) == "SANDBOX_ERROR"
    zygote.close_template()
    assert not marker.exists() and list(tmp_path.iterdir()) == []
    assert len(zygote.warnings) == 1 and "child setup failed: SANDBOX:rlimits" in zygote.warnings[0]


def test_wipe_never_follows_a_planted_link(tmp_path):
    from verl_rlif.sandbox.wipe import empty_path

    victim, base = tmp_path / "host", tmp_path / "base"
    (victim / "a" / "b").mkdir(parents=True)
    (victim / "a" / "keep.txt").write_text("host data")
    victim.chmod(0o755)
    (base / "run1x" / "locked").mkdir(parents=True)
    (base / "run1x" / "locked").chmod(0)  # the program took its own permissions away
    (base / "run1").symlink_to(victim)  # ... and replaced its renamed directory by a link to a host directory
    (base / "run1x" / "link").symlink_to(victim / "a")
    empty_path(str(base))
    assert list(base.iterdir()) == []
    assert (victim / "a" / "keep.txt").read_text() == "host data" and (victim / "a" / "b").is_dir()
    assert oct(victim.stat().st_mode & 0o777) == "0o755" and oct((victim / "a").stat().st_mode & 0o777) != "0o700"


def test_the_group_is_killed_before_the_template_reaps(tmp_path, monkeypatch):
    """The template reports the exit without reaping; the collector kills the child's group, then asks for the reap:
    the pid (and its group id) cannot have gone to another process when it is signalled."""
    from verl_rlif.sandbox import zygote as zygote_module

    events = []
    kill_group, send = zygote_module._kill_group, zygote_module.Zygote._to_template
    monkeypatch.setattr(zygote_module, "_kill_group", lambda pid: (events.append("kill"), kill_group(pid)))

    def to_template(self, command, fds=()):
        events.append(command["op"])
        send(self, command, fds)

    monkeypatch.setattr(zygote_module.Zygote, "_to_template", to_template)
    zygote = zygote_module.Zygote({"base_dir": str(tmp_path), "float_digits": 6, "output_limit_bytes": 4096})
    assert zygote.run_one({"source": "print('x' * 5000)", "fn_name": None}, "", 5.0) == "OUTPUT_LIMIT"
    assert zygote.run_one({"source": "import time\ntime.sleep(0.2)\nprint(1)", "fn_name": None}, "", 5.0) == "OUT:1"
    assert zygote.run_one({"source": "import os\nos._exit(3)", "fn_name": None}, "", 5.0) == "EXIT:3"
    assert zygote.run_one({"source": "import time\ntime.sleep(5)", "fn_name": None}, "", 0.3) == "TIMEOUT"
    assert events == ["fork", "kill", "reap"] * 4
    zygote.settle()
    zygote.close_template()


def test_wipe_reaches_any_depth_and_locked_directories(tmp_path):
    from verl_rlif.sandbox import wipe

    depth = sys.getrecursionlimit() + 100
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        os.mkdir("d", dir_fd=fd)
        os.symlink(str(tmp_path.parent), "link", dir_fd=fd)  # never followed
        if level % 300 == 0:
            os.mkdir("locked", 0, dir_fd=fd)  # a program took its own permissions away
        fd, parent = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    outside = sorted(os.listdir(tmp_path.parent))
    wipe.remove_tree(str(tmp_path))
    assert not tmp_path.exists() and sorted(os.listdir(tmp_path.parent)) == sorted(set(outside) - {tmp_path.name})


def test_a_worker_that_cannot_wipe_runs_nothing_more_and_asks_to_be_replaced(tmp_path, monkeypatch):
    from verl_rlif.sandbox import protocol, wipe, zygote

    def stuck(path):
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(wipe, "empty_path", stuck)
    worker = zygote.Zygote({"base_dir": str(tmp_path), "float_digits": 6, "output_limit_bytes": 4096})
    requests, replies = os.pipe(), os.pipe()
    for _ in range(2):
        protocol.send(requests[1], {"source": "print(1)", "fn_name": None, "inputs": ["", ""], "timeout_s": 5.0})
    os.close(requests[1])
    worker.serve(requests[0], replies[1])
    worker.close_template()
    os.close(replies[1])
    reply = protocol.receive(replies[0])
    assert reply["signatures"] == ["OUT:1", "SANDBOX_ERROR"] and reply["retire"] is True
    assert "could not wipe" in reply["warnings"][0]
    assert os.read(replies[0], 1) == b""  # the second request was never served


def test_processes_a_program_left_behind_are_killed_with_its_group(tmp_path):
    """Without seccomp (allow_insecure) a program can fork; its process group goes even when it exited itself."""
    from verl_rlif.sandbox.zygote import Zygote

    config = {"base_dir": str(tmp_path), "float_digits": 6, "output_limit_bytes": 4096}
    program = "import os, time\npid = os.fork()\nif pid == 0:\n    os.close(1)\n    time.sleep(30)\n    os._exit(0)\n"
    zygote = Zygote(config)
    signature = zygote.run_one({"source": program + "print(pid)", "fn_name": None}, "", 5.0)
    zygote.close_template()
    assert signature.startswith("OUT:") and gone([int(signature[4:])])


@pytest.mark.skipif(landlock.abi_version() < 1, reason="Landlock is not available in this kernel")
def test_without_a_size_limited_filesystem_no_file_can_be_created(tmp_path):
    """The ``write_limit`` fallback (no bubblewrap, no CAP_SYS_ADMIN for a tmpfs): the run directory stays readable
    and usable as cwd, but nothing can be created in it, so a program writes no bytes at all."""
    ruleset = landlock.Ruleset([os.path.dirname(os.__file__)])

    def check() -> int:
        seccomp.set_no_new_privs()
        ruleset.restrict_self([str(tmp_path)], create=False)
        seccomp.Filter().install()  # O_TMPFILE: Landlock does not count it as a creation; the filter refuses it
        os.listdir(tmp_path)
        denied = [
            refused(lambda: (tmp_path / "f").write_text("x")),
            refused(lambda: os.mkdir(tmp_path / "d")),
            refused(lambda: os.open(tmp_path, os.O_TMPFILE | os.O_RDWR)),
            refused(lambda: os.symlink("/etc", tmp_path / "l")),
        ]
        return 0 if all(denied) else 1

    try:
        assert in_fork(check) == 0 and list(tmp_path.iterdir()) == []
    finally:
        ruleset.close()
