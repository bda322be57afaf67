"""The sandbox worker process ("zygote"): runs each (program, input) in an isolated child and reports signatures.

Started by :mod:`verl_rlif.sandbox.local` as ``python -s zygote.py`` (a fresh interpreter, never a fork of the
trainer or a Ray worker), with an allow-listed environment, optionally inside bubblewrap. It reads its
configuration as the first message on stdin (argv would show it to every local user), imports only the standard
library and this package's stdlib-only modules, probes which isolation layers work here, reports them in a hello
message, then serves requests on stdin/stdout (``protocol.py``):

    request  {"source": str, "fn_name": str | null, "inputs": [str], "timeout_s": float}
    response {"signatures": [str], "warnings": [str], "retire": bool}

Two processes, so that no program ever starts from memory that held another program's data:

* the **collector** (this process) receives requests, creates each run's directory and sealed memfds (the
  program's stdin, and the request itself), supervises the child, reads its output and record, wipes the directory;
* the **template**, forked from the collector at start-up before any request, never sees a program, an input or
  an output: per run it receives only descriptors and a deadline over a socketpair, forks the child, and reaps it
  when the collector asks (after the collector killed the child's process group, so the pid stays the child's
  until then). The child reads its program and input from the memfds only after it was forked.

Per input, the child: new session; stdin = the sealed input memfd, stdout/record pipes to the collector, stderr =
/dev/null, every other descriptor closed; cwd = a fresh private directory; rlimits (address space, CPU, file
size, open files, core 0; hard = soft); every capability and the bounding set dropped (and the uid when running
as root); parent-death signal (which the filter then keeps); no-new-privileges; Landlock; seccomp; "ready" on a
status pipe that it then closes; then the program (``harness.run``). Any setup failure is written to that pipe
instead and exits 125 before the program runs (fail closed); the program never holds that pipe, so it cannot
pass for a setup failure. The collector enforces the wall-clock deadline and the output cap, kills the child's
process group, and exits (killing the child) as soon as its owner's pipe closes: nothing outlives the trusted side.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run as a script: import this package from its root, not the script's directory
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ctypes
import errno
import fcntl
import functools
import gc
import json
import math
import resource
import select
import signal
import socket
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
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 47, 4
CAP_SETPCAP = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS, MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x00020000, 2, 4, 1 << 14, 1 << 18
READ_CHUNK = 65536
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


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capabilities() -> tuple[int, int]:
    """(effective, permitted) capability sets of the calling thread, as 64-bit masks."""
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return data[0].effective | data[1].effective << 32, data[0].permitted | data[1].permitted << 32


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as last:
            return int(last.read())
    except (OSError, ValueError):
        return 63


def drop_bounding_set(last_cap: int | None = None) -> bool:
    """Empty the capability bounding set and the ambient set (needs CAP_SETPCAP); False when not held (then no
    capability can be gained anyway: no-new-privileges, and the filter refuses exec)."""
    if not _capabilities()[0] & (1 << CAP_SETPCAP):
        return False
    for cap in range((last_cap if last_cap is not None else _last_capability()) + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap}) failed")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    return True


def drop_capabilities(last_cap: int | None = None, bounding: bool = True) -> None:
    """No capability left in any set: a root child cannot raise a hard rlimit, resize pipes beyond the limit,
    bypass file permissions, ... The bounding set goes first (dropping it needs CAP_SETPCAP); ``bounding=False``
    when the caller already emptied it."""
    if bounding:
        drop_bounding_set(last_cap)
    if _libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    if _capabilities() != (0, 0):
        raise OSError("capabilities remain after capset")


def _mount_private_tmpfs(path: str, size_bytes: int) -> None:
    """Give this process (and the children it forks) a mount namespace in which ``path`` is a tmpfs of
    ``size_bytes``: every program's total writes are bounded by it. Needs CAP_SYS_ADMIN (root outside a
    restricted container); the host sees ``path`` empty, and the mount goes with the last process using it."""
    libc = _libc
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making mounts private failed")
    options = f"size={size_bytes},mode=0711".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        raise OSError(ctypes.get_errno(), "mounting the tmpfs failed")


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
        self.last_cap = _last_capability()
        self.drop_caps = False  # set by setup_layers when this process holds capabilities
        # whether the base directory is a size-limited filesystem (bubblewrap's tmpfs, or one mounted here); where
        # it is not, programs may not create files at all, so their total writes stay bounded (by nothing but 0)
        self.bounded_dir = bool(config.get("tmpfs"))
        self.template: socket.socket | None = None  # the collector's end of the template's control socket
        self.template_pid: int | None = None
        self.unreaped = 0  # reap requests whose answer has not been read yet
        self.owner_fd: int | None = None  # the trusted side's pipe: readable mid-run only when it closed

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
        """Probe every layer this machine allows (each in a forked child) and keep those that work."""
        try:
            self.filter = seccomp.Filter()
            self.layers["seccomp"] = self._probe(self._probe_seccomp)
        except OSError as error:
            self.layers["seccomp"] = f"unavailable: {error}"
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
        self.layers["uid_drop"] = self._uid_drop_status()
        self.drop_uid = self.layers["uid_drop"] == "active"
        self.drop_caps = _capabilities() != (0, 0)
        status = "active (none held)"
        if self.drop_caps:
            status = self._probe(lambda: drop_capabilities(self.last_cap))
            status = "active (all dropped, bounding set emptied)" if status == "active" else status
            self.drop_caps = status.startswith("active")  # else the layer is reported missing, not every run failed
        self.layers["capabilities"] = status
        if not self.layers.get("seccomp", "").startswith("active"):
            self.filter = None
        if not self.layers.get("landlock", "").startswith("active"):
            self.ruleset = None
        self.layers["write_limit"] = self._write_limit_status()
        if self.drop_uid:
            os.chmod(self.base_dir, 0o711)

    def _uid_drop_status(self) -> str:
        host_uid = _host_uid(os.geteuid()) if _in_user_namespace() else None
        if os.geteuid() != 0 and host_uid == 0:  # bwrap started by root: file access is still host root's
            return f"unavailable: namespaced only (uid {os.geteuid()} in a user namespace that maps it to host uid 0)"
        if os.geteuid() != 0 and host_uid is not None:
            return f"active (uid {os.geteuid()} in a user namespace, host uid {host_uid})"
        if os.geteuid() != 0:
            return "not needed (not running as root)"
        return self._probe(self._probe_uid_drop)

    def _write_limit_status(self) -> str:
        size_mb = int(self.config["file_size_limit_mb"])
        if self.bounded_dir:
            return f"active (private tmpfs of {size_mb} MiB per worker, bubblewrap)"
        try:
            _mount_private_tmpfs(self.base_dir, size_mb * 2**20)
            self.bounded_dir = True
            return f"active (private tmpfs of {size_mb} MiB per worker, own mount namespace)"
        except OSError as error:
            if self.ruleset is None:
                return f"unavailable: no size-limited filesystem ({error}) and no Landlock to refuse new files"
            return f"active (no files: no size-limited filesystem here ({error}), so programs may create none)"

    def set_limits(self) -> None:
        # the child starts as a copy of this process: its address-space budget is our size plus the limit
        memory = _vm_size_bytes() + int(self.config["memory_limit_mb"]) * 2**20
        file_size = int(self.config["file_size_limit_mb"]) * 2**20
        files = int(self.config["open_files_limit"])
        wanted = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_NOFILE, files)]
        self.limits = [_clamped(kind, value, value) for kind, value in [*wanted, (resource.RLIMIT_CORE, 0)]]

    # ---------------------------------------------------------------- the template: forks children, sees no data
    def start_template(self) -> None:
        """Fork the template now, before this process holds any program's data (start-up, or a test's Zygote)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                # nothing of the collector's: its pipes to the trusted side (whose EOF must mean "collector gone")
                keep = {theirs.fileno(), self.devnull, *(self.ruleset.descriptors() if self.ruleset else ())}
                for fd in (0, 1):
                    os.dup2(self.devnull, fd)
                _close_all_but(keep | {0, 1, 2}, self.max_fd)
                _die_with_parent()
                if os.getppid() != self.pid:
                    os._exit(0)
                self._template_loop(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.template, self.template_pid = ours, pid

    def _settle_quietly(self) -> None:
        try:
            self.settle()
        except OSError as error:  # the template died: the next run retires this worker
            self.warnings.append(f"the template process failed ({error}); replacing this worker")
            self.retiring = True

    def close_template(self) -> None:
        """Stop the template (it exits when its control socket closes) and reap it."""
        if self.template is not None:
            self.template.close()
            os.waitpid(self.template_pid, 0)
            self.template = self.template_pid = None

    def _template_loop(self, control: socket.socket) -> None:
        """Per run: ``fork`` (deadline, run directory; descriptors attached) -> the child's pid, then, once it has
        exited, its wait status (waited for without reaping it); ``reap`` -> 0 once reaped (the collector sends it
        after killing the group, and reads the answer only before its next message or reply, so the reap overlaps
        with its wipe of the directory). Nothing else ever reaches this process."""
        while True:
            message, fds, _, _ = socket.recv_fds(control, 4096, 8)
            if not message:
                return
            command = json.loads(message)
            if command["op"] == "reap":
                os.waitpid(command["pid"], 0)
                control.send(b"0")
                continue
            try:
                pid = os.fork()
            except OSError as error:
                pid = -(error.errno or 1)
            if pid == 0:
                self._child(fds, command["run_dir"], command["cpu_s"])
            for fd in fds:
                os.close(fd)
            control.send(str(pid).encode())
            if pid > 0:
                control.send(str(_wait_status(os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT))).encode())

    def _to_template(self, command: dict, fds: list[int] = ()) -> None:
        socket.send_fds(self.template, [json.dumps(command).encode()], list(fds))
        self.unreaped += command["op"] == "reap"

    def settle(self) -> None:
        """Wait until the template has reaped every finished child: no zombie of an answered run remains."""
        while self.unreaped:
            self._from_template()
            self.unreaped -= 1

    def _from_template(self) -> int:
        reply = self.template.recv(64)
        if not reply:
            raise OSError("the template process is gone")
        return int(reply)

    # ---------------------------------------------------------------- one run
    def _child(self, fds: list[int], run_dir: str, cpu_s: int):
        """``fds``: stdin, stdout, record, setup-status and request descriptors. The status pipe gets "ready", or
        why the setup failed, and is closed before the program runs: nothing the program writes can pass for
        either. The program and its input are read from the request memfd here, after the fork."""
        stdin_fd, out_w, res_w, status_w, request_fd = fds
        step, report_fd, parent = "session", status_w, os.getppid()  # the template
        try:
            os.setsid()
            step = "descriptors"
            # every source moves above 0-4 first: one received as, say, 3 must not be replaced before it is used
            sources = (stdin_fd, out_w, self.devnull, res_w, status_w, request_fd)
            *high, request_fd = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in sources]
            for target, fd in enumerate(high):
                os.dup2(fd, target)
            report_fd = STATUS_FD
            step = "request"
            request = json.loads(_read_all(request_fd, os.pread))
            step = "private_dir"
            os.chdir(run_dir)
            step = "rlimits"
            for kind, soft, hard in [*self.limits, _clamped(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)]:
                resource.setrlimit(kind, (soft, hard))
            step = "capabilities"
            if self.drop_caps:
                drop_bounding_set(self.last_cap)  # needs CAP_SETPCAP: before the uid change
            if self.drop_uid:
                step = "uid_drop"
                self._become_sandbox_user()
            if self.drop_caps:
                step = "capabilities"
                drop_capabilities(self.last_cap, bounding=False)
            step = "parent_death"
            _die_with_parent()  # after the uid change, which clears it; the filter then keeps it
            if os.getppid() != parent:
                os._exit(SETUP_FAILED)
            step = "no_new_privs"
            seccomp.set_no_new_privs()
            if self.ruleset is not None:
                step = "landlock"
                # writes only beneath this run's own directory; no new files where nothing bounds their total size
                self.ruleset.restrict_self([run_dir], create=self.bounded_dir)
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
        harness.run(request["source"], request.get("fn_name"), request.get("arg"), self.digits, _report)
        os._exit(0)

    def run_one(self, request: dict, arg: str, timeout_s: float) -> str:
        if self.retiring:
            return SANDBOX_ERROR
        if self.template is None:
            self.start_template()
        self.runs += 1
        run_dir = os.path.join(self.base_dir, f"run{self.runs}")
        os.mkdir(run_dir, 0o700)
        if self.drop_uid:
            os.chown(run_dir, self.uid, self.uid)
        call_mode = bool(request.get("fn_name"))
        stdin_fd = _sealed_memfd(b"" if call_mode else arg.encode("utf-8", "surrogateescape"))
        program = {"source": request["source"], "fn_name": request.get("fn_name"), "arg": arg}
        request_fd = _sealed_memfd(json.dumps(program).encode("utf-8", "surrogatepass"))
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        res_r, res_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        command = {"op": "fork", "run_dir": run_dir, "cpu_s": math.ceil(timeout_s) + 1}
        try:
            self.settle()
            self._to_template(command, [stdin_fd, out_w, res_w, status_w, request_fd])
            pid = self._from_template()
        except OSError as error:
            pid = -1
            self.warnings.append(f"the template process failed ({error}); replacing this worker")
            self.retiring = True
        for fd in (stdin_fd, out_w, res_w, status_w, request_fd):
            os.close(fd)
        try:
            if pid < 0:
                if not self.retiring:
                    self.warnings.append(f"could not fork a child: {os.strerror(-pid)}")
                return SANDBOX_ERROR
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
        return bounded(verdict or self._classify(out, record, status, call_mode, setup))

    def _supervise(self, pid: int, out_r: int, res_r: int, timeout_s: float):
        """Read both pipes until the child has exited (the template sends its wait status) and closed them, or a
        limit hits; kill its group and have the template reap it. Returns (verdict or None, stdout, record, wait
        status)."""
        deadline = time.monotonic() + timeout_s
        buffers = {out_r: bytearray(), res_r: bytearray()}
        open_fds = [out_r, res_r]
        control = self.template.fileno()
        owner = [self.owner_fd] if self.owner_fd is not None else []
        verdict, status = None, None
        while open_fds or status is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                verdict = TIMEOUT
                break
            # gone, but pipes still open: something else holds them (only possible without seccomp)
            wait_s = remaining if status is None else min(remaining, EXIT_GRACE_S)
            watch = open_fds + owner + ([control] if status is None else [])
            ready = select.select(watch, [], [], wait_s)[0]
            if not ready and status is not None:
                break
            for fd in ready:
                if fd == control:
                    status = self._from_template()
                    continue
                if fd == self.owner_fd:  # the trusted side closed its pipe (it died): nothing may outlive it
                    _kill_group(pid)
                    os._exit(0)
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    open_fds.remove(fd)
                    continue
                buffers[fd] += chunk
                if len(buffers[fd]) > self.output_limit:
                    verdict = OUTPUT_LIMIT
            if verdict:
                break
        # the pid (and so its group id) stays the child's until the template reaps it, which happens only after
        # this: the group is killed first, so whatever the program left in it (possible only without seccomp) goes
        _kill_group(pid)
        if status is None:
            status = self._from_template()  # sent once the kill took effect
        self._to_template({"op": "reap", "pid": pid})
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
            self._settle_quietly()
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


def _close_all_but(keep: set[int], max_fd: int) -> None:
    low = 0
    for fd in sorted(keep):
        if low < fd:  # never an empty range: CPython 3.11 turns closerange(0, 0) into close_range(0, ~0)
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max_fd)


def _read_all(fd: int, pread=None) -> bytes:
    """Everything from a pipe (until EOF), or with ``pread`` from a memfd from offset 0 (its offset untouched)."""
    chunks = []
    while chunk := (pread(fd, 65536, sum(map(len, chunks))) if pread else os.read(fd, 65536)):
        chunks.append(chunk)
    return b"".join(chunks)


def _report(record: str) -> None:
    protocol.write_all(3, ("\n" + record + "\n").encode("utf-8", "surrogateescape"))


def _sealed_memfd(data: bytes) -> int:
    fd = os.memfd_create("sandbox", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    protocol.write_all(fd, data)
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


def _wait_status(result) -> int:
    """A ``waitid`` result as the status ``waitpid`` would give (for ``os.waitstatus_to_exitcode``)."""
    if result.si_code == os.CLD_EXITED:
        return (result.si_status & 0xFF) << 8
    return result.si_status | (0x80 if result.si_code == os.CLD_DUMPED else 0)


def main() -> int:
    _die_with_parent()
    # the protocol moves off 0/1 so that children can take those numbers; nothing else reads sys.stdin/stdout
    reader, writer = os.dup(0), os.dup(1)
    for fd in (reader, writer):
        os.set_inheritable(fd, False)
    config = protocol.receive(reader)  # the first message (not argv, which /proc/<pid>/cmdline shows to anyone)
    harness.preload()
    zygote = Zygote(config)
    zygote.owner_fd = reader
    zygote.setup_layers()
    zygote.set_limits()
    gc.collect()
    gc.freeze()  # children share the heap copy-on-write; the collector would otherwise touch every page
    zygote.start_template()  # before any program's data exists in this process
    probe = zygote.run_one({"source": "print(6 * 7)", "fn_name": None}, "", 10.0)
    zygote._settle_quietly()
    protocol.send(writer, {"layers": zygote.layers, "probe": probe, "warnings": zygote.warnings})
    zygote.warnings = []
    zygote.serve(reader, writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
