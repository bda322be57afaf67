"""The sandbox worker process ("zygote"): forks one isolated child per (program, input) and reports signatures.

Started by :mod:`verl_rlif.sandbox.local` as ``python -s zygote.py`` (a fresh interpreter, never a fork of the
trainer or a Ray worker), with an allow-listed environment, optionally inside bubblewrap. It reads its
configuration as the first message on stdin (argv would show it to every local user), imports only the standard
library and this package's stdlib-only modules, probes which isolation layers work here, reports them in a hello
message, then serves requests on stdin/stdout (``protocol.py``):

    request  {"source": str, "fn_name": str | null, "inputs": [str], "timeout_s": float}
    response {"signatures": [str], "warnings": [str]}

Per input, the child: new session; stdin = a sealed memfd holding the input, stdout/record pipes to this
process, stderr = /dev/null, every other descriptor closed; cwd = a fresh private directory; rlimits (address
space, CPU, file size, open files, core 0; hard = soft); uid drop when running as root; parent-death signal;
no-new-privileges; Landlock; seccomp; "ready" on a status pipe that it then closes; then the program
(``harness.run``). Any setup failure is written to that pipe instead and exits 125 before the program runs (fail
closed); the program never holds that pipe, so it cannot pass for a setup failure. This process enforces the
wall-clock deadline and the output cap, kills the child's process group, always reaps it and wipes the private
directory.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script: import this package from its root, not the script's directory
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ctypes
import fcntl
import functools
import gc
import json
import math
import resource
import select
import signal
import time

from verl_rlif.sandbox import harness, landlock, protocol, seccomp, wipe
from verl_rlif.sandbox.signature import (
    OUTPUT_LIMIT,
    SANDBOX_ERROR,
    TIMEOUT,
    bounded,
    each_until_timeout,
    from_record,
)

SETUP_FAILED = 125
STATUS_FD = 4  # the child's setup-status pipe, closed before the program starts
READY = b"ready"
PR_SET_PDEATHSIG = 1
READ_CHUNK = 65536
POLL_S = 0.005  # how often the child's exit is polled where pidfds are missing
EXIT_GRACE_S = 0.05  # after the child exited, how long its pipes may stay open before reading stops
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_libc = ctypes.CDLL(None, use_errno=True)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as uid_map:
            return uid_map.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _host_uid(uid: int) -> int | None:
    """The uid outside the user namespace that ``uid`` inside it maps to (None when unmapped or unreadable)."""
    try:
        with open("/proc/self/uid_map") as uid_map:
            for line in uid_map:
                inside, outside, count = (int(field) for field in line.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return None


def _die_with_parent() -> None:
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class Zygote:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.base_dir = config["base_dir"]
        self.uid = config.get("uid")
        self.digits = int(config["float_digits"])
        self.output_limit = int(config["output_limit_bytes"])
        self.pid = os.getpid()
        self.runs = 0
        self.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self.filter: seccomp.Filter | None = None
        self.ruleset: landlock.Ruleset | None = None
        self.drop_uid = False
        self.layers: dict[str, str] = {}
        self.warnings: list[str] = []  # sent with the next response; the trusted side logs them
        self.retiring = False  # the base directory could not be wiped: answer, then exit for a fresh worker
        self.limits: list[tuple[int, int, int]] = []
        self.max_fd = os.sysconf("SC_OPEN_MAX")

    # ---------------------------------------------------------------- layers, probed once at start-up
    def read_paths(self) -> list[str]:
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        return sorted(prefixes) + list(landlock.SYSTEM_READ_PATHS) + list(landlock.SYSTEM_READ_FILES)

    def _probe(self, setup) -> str:
        """Run ``setup`` in a forked child; 'active' if it succeeds there, else 'unavailable: <why>'."""
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(reader)
                setup()
                os._exit(0)
            except BaseException as error:
                os.write(writer, f"{type(error).__name__}: {error}".encode()[:500])
                os._exit(1)
        os.close(writer)
        message = b""
        while chunk := os.read(reader, 4096):
            message += chunk
        os.close(reader)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            return "active"
        return "unavailable: " + (message.decode(errors="replace") or f"probe exited with status {status}")

    def _probe_seccomp(self) -> None:
        self.filter.install()
        try:
            pid = os.fork()
        except PermissionError:
            return
        if pid == 0:
            os._exit(0)
        raise OSError("the filter loaded but fork() still works")

    def _probe_landlock(self) -> None:
        seccomp.set_no_new_privs()
        self.ruleset.restrict_self()
        try:
            os.listdir(os.path.dirname(self.base_dir))
        except PermissionError:
            return
        raise OSError("the ruleset loaded but a directory outside it is still readable")

    def _probe_uid_drop(self) -> None:
        self._become_sandbox_user()
        for path in (os.__file__, json.__file__):  # the interpreter must stay importable after the drop
            with open(path, "rb"):
                pass
            os.listdir(os.path.dirname(path))

    def _become_sandbox_user(self) -> None:
        os.setgroups([])
        os.setresgid(self.uid, self.uid, self.uid)
        os.setresuid(self.uid, self.uid, self.uid)

    def setup_layers(self) -> None:
        wanted = self.config["layers"]
        if wanted.get("seccomp"):
            try:
                self.filter = seccomp.Filter()
                self.layers["seccomp"] = self._probe(self._probe_seccomp)
            except OSError as error:
                self.layers["seccomp"] = f"unavailable: {error}"
        if wanted.get("landlock"):
            try:
                self.ruleset = landlock.Ruleset(self.read_paths())
                status = self._probe(self._probe_landlock)
                if status == "active":
                    status = f"active (ABI {self.ruleset.abi}"
                    status += ", TCP denied" if self.ruleset.network else ", TCP not handled (ABI < 4)"
                    status += ", signals and abstract sockets scoped)" if self.ruleset.scoped else ")"
                self.layers["landlock"] = status
            except OSError as error:
                self.layers["landlock"] = f"unavailable: {error}"
        if wanted.get("uid_drop"):
            host_uid = _host_uid(os.geteuid()) if _in_user_namespace() else None
            if os.geteuid() != 0 and host_uid == 0:  # bwrap started by root: file access is still host root's
                self.layers["uid_drop"] = (
                    f"unavailable: namespaced only (uid {os.geteuid()} in a user namespace that maps it to host uid 0)"
                )
            elif os.geteuid() != 0 and host_uid is not None:
                self.layers["uid_drop"] = f"active (uid {os.geteuid()} in a user namespace, host uid {host_uid})"
            elif os.geteuid() != 0:
                self.layers["uid_drop"] = "not needed (not running as root)"
            else:
                self.layers["uid_drop"] = self._probe(self._probe_uid_drop)
                self.drop_uid = self.layers["uid_drop"] == "active"
        if not self.layers.get("seccomp", "").startswith("active"):
            self.filter = None
        if not self.layers.get("landlock", "").startswith("active"):
            self.ruleset = None
        if self.drop_uid:
            os.chmod(self.base_dir, 0o711)

    def set_limits(self) -> None:
        # the child starts as a copy of this process: its address-space budget is our size plus the limit
        memory = _vm_size_bytes() + int(self.config["memory_limit_mb"]) * 2**20
        file_size = int(self.config["file_size_limit_mb"]) * 2**20
        files = int(self.config["open_files_limit"])
        wanted = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_NOFILE, files)]
        self.limits = [_clamped(kind, value, value) for kind, value in [*wanted, (resource.RLIMIT_CORE, 0)]]

    # ---------------------------------------------------------------- one run
    def _child(self, fds: tuple[int, int, int, int], run_dir: str, cpu_s: int, request: dict, arg: str):
        """``fds``: stdin, stdout, record and setup-status descriptors. The status pipe gets "ready", or why the
        setup failed, and is closed before the program runs: nothing the program writes can pass for either."""
        stdin_fd, out_w, res_w, status_w = fds
        step, report_fd = "session", status_w
        try:
            os.setsid()
            step = "descriptors"
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in (stdin_fd, out_w, self.devnull, res_w, status_w)]
            for target, fd in enumerate(high):
                os.dup2(fd, target)
            report_fd = STATUS_FD
            step = "private_dir"
            os.chdir(run_dir)
            step = "rlimits"
            for kind, soft, hard in [*self.limits, _clamped(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)]:
                resource.setrlimit(kind, (soft, hard))
            if self.drop_uid:
                step = "uid_drop"
                self._become_sandbox_user()
            step = "parent_death"
            _die_with_parent()  # after the uid change, which clears it
            if os.getppid() != self.pid:
                os._exit(SETUP_FAILED)
            step = "no_new_privs"
            seccomp.set_no_new_privs()
            if self.ruleset is not None:
                step = "landlock"
                self.ruleset.restrict_self([run_dir])  # writes only beneath this run's own directory
            step = "descriptors"
            os.closerange(STATUS_FD + 1, self.max_fd)
            if self.filter is not None:
                step = "seccomp"
                self.filter.install()
            step = "environment"
            os.environ.update({"HOME": run_dir, "TMPDIR": run_dir, "PWD": run_dir})
            sys.path[:] = [p for p in sys.path if p != PACKAGE_ROOT]
            sys.argv[:] = [""]
            sys.dont_write_bytecode = True
            sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)
            sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", closefd=False)
            step = "ready"
            os.write(STATUS_FD, READY)
            os.close(STATUS_FD)
        except BaseException as error:
            os.write(report_fd, f"SANDBOX:{step}: {error}".encode()[:500])
            os._exit(SETUP_FAILED)
        harness.run(request["source"], request.get("fn_name"), arg, self.digits, _report)
        os._exit(0)

    def run_one(self, request: dict, arg: str, timeout_s: float) -> str:
        if self.retiring:
            return SANDBOX_ERROR
        self.runs += 1
        run_dir = os.path.join(self.base_dir, f"run{self.runs}")
        os.mkdir(run_dir, 0o700)
        if self.drop_uid:
            os.chown(run_dir, self.uid, self.uid)
        stdin_fd = _sealed_memfd(b"" if request.get("fn_name") else arg.encode("utf-8", "surrogateescape"))
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        cpu_s = math.ceil(timeout_s) + 1
        pid = os.fork()
        if pid == 0:
            self._child((stdin_fd, out_w, res_w, status_w), run_dir, cpu_s, request, arg)
        for fd in (stdin_fd, out_w, res_w, status_w):
            os.close(fd)
        try:
            verdict, out, record, status = self._supervise(pid, out_r, res_r, timeout_s)
            setup = _read_all(status_r)  # the child is reaped: nothing holds the write end any more
        finally:
            for fd in (out_r, res_r, status_r):
                os.close(fd)
            try:
                wipe.empty_path(self.base_dir)
            except OSError as error:  # a later program would share what is left: this worker serves no more
                self.warnings.append(f"could not wipe the private directory ({error}); replacing this worker")
                self.retiring = True
        return bounded(verdict or self._classify(out, record, status, bool(request.get("fn_name")), setup))

    def _supervise(self, pid: int, out_r: int, res_r: int, timeout_s: float):
        """Read both pipes until the child has exited and closed them, or a limit hits; kill and reap it.
        Returns (verdict or None, stdout, record, wait status)."""
        deadline = time.monotonic() + timeout_s
        buffers = {out_r: bytearray(), res_r: bytearray()}
        open_fds = [out_r, res_r]
        pidfd = _pidfd(pid)
        verdict, exited, status = None, False, None
        while open_fds or not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                verdict = TIMEOUT
                break
            if pidfd is None and not exited:  # no pidfd (Linux < 5.3): poll for the exit
                exited, status = _poll_exit(pid)
            wait_s = remaining if pidfd is not None else min(remaining, POLL_S)
            if exited:  # gone; pipes still open means something else holds them (only possible without seccomp)
                wait_s = min(wait_s, EXIT_GRACE_S)
            watch = open_fds + ([pidfd] if pidfd is not None and not exited else [])
            ready = select.select(watch, [], [], wait_s)[0] if watch else []
            if not ready and exited:
                break
            for fd in ready:
                if fd == pidfd:
                    exited = True
                    continue
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    open_fds.remove(fd)
                    continue
                buffers[fd] += chunk
                if len(buffers[fd]) > self.output_limit:
                    verdict = OUTPUT_LIMIT
            if verdict:
                break
        if pidfd is not None:
            os.close(pidfd)
        # always while unreaped (the pid, and so its group id, stays ours until waitpid): without seccomp a program
        # may have left processes in its group even after it exited; once reaped, the pid may be another process's
        if status is None:
            _kill_group(pid)
            status = os.waitpid(pid, 0)[1]
        return verdict, bytes(buffers[out_r]), bytes(buffers[res_r]), status

    def _classify(self, out: bytes, record: bytes, status: int, call_mode: bool, setup: bytes) -> str:
        code = os.waitstatus_to_exitcode(status)
        if setup != READY:
            self.warnings.append(f"child setup failed: {setup.decode(errors='replace') or f'exit status {code}'}")
            return SANDBOX_ERROR
        return from_record(record.decode("utf-8", "surrogateescape"), out, code, call_mode, self.digits)

    def serve(self, reader, writer) -> None:
        while True:
            try:
                request = protocol.receive(reader)
            except EOFError:  # the trusted side is gone
                return
            run_one = functools.partial(self.run_one, request, timeout_s=float(request["timeout_s"]))
            signatures = each_until_timeout(request["inputs"], run_one)
            protocol.send(writer, {"signatures": signatures, "warnings": self.warnings, "retire": self.retiring})
            self.warnings = []
            if self.retiring:
                return


def _clamped(kind: int, soft: int, hard: int) -> tuple[int, int, int]:
    """(kind, soft, hard) within the hard limit this process already has (an unprivileged process cannot raise it)."""
    ceiling = resource.getrlimit(kind)[1]
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    return kind, soft, hard


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


def _report(record: str) -> None:
    data = ("\n" + record + "\n").encode("utf-8", "surrogateescape")
    while data:
        data = data[os.write(3, data) :]


def _sealed_memfd(data: bytes) -> int:
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)  # the program cannot write GBs into its own stdin
    return fd


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group (it is a session leader), and the child itself should setsid have failed."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _poll_exit(pid: int) -> tuple[bool, int | None]:
    done, status = os.waitpid(pid, os.WNOHANG)
    return (True, status) if done == pid else (False, None)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Linux < 5.3 or Python < 3.9: poll instead
        return None


def main() -> int:
    _die_with_parent()
    # the protocol moves off 0/1 so that children can take those numbers; nothing else reads sys.stdin/stdout
    reader, writer = os.dup(0), os.dup(1)
    for fd in (reader, writer):
        os.set_inheritable(fd, False)
    config = protocol.receive(reader)  # the first message (not argv, which /proc/<pid>/cmdline shows to anyone)
    harness.preload()
    zygote = Zygote(config)
    zygote.setup_layers()
    zygote.set_limits()
    probe = zygote.run_one({"source": "print(6 * 7)", "fn_name": None}, "", 10.0)
    gc.collect()
    gc.freeze()  # children share the heap copy-on-write; the collector would otherwise touch every page
    protocol.send(writer, {"layers": zygote.layers, "probe": probe, "warnings": zygote.warnings})
    zygote.warnings = []
    zygote.serve(reader, writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
