"""The local backend: a pool of zygote worker processes (``zygote.py``), started fresh and reused.

Each worker is a new interpreter (``subprocess`` fork+exec, never a fork of the calling Ray worker or trainer)
with an allow-listed environment, its own process group, a private base directory that this side creates and
removes, and, where ``bwrap`` exists and namespaces are permitted, bubblewrap namespaces (no network, own pid
namespace, a read-only view of the Python installation and system libraries only, a size-limited tmpfs as the
private directory). Workers report which layers they could establish; :meth:`LocalExecutor.start` logs one
line with them and refuses (:class:`SandboxUnavailable`) when a required layer is missing, unless
``allow_insecure``. A worker that misses its deadline is killed with its process group and restarted on the
next request (that request's inputs get ``SANDBOX_ERROR``); a worker found dead (killed from outside) is
restarted and the request retried once (programs leave nothing behind, so a partial first try is harmless).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox import protocol, wipe
from verl_rlif.sandbox.executor import Executor, SandboxUnavailable
from verl_rlif.sandbox.signature import SANDBOX_ERROR

logger = logging.getLogger(__name__)

ZYGOTE = Path(__file__).with_name("zygote.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE_S = 60.0
REQUEST_SLACK_S = 5.0  # on top of the inputs' deadlines: scheduling on a loaded node
SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime")

# The whole environment of a worker and its programs: nothing of the trainer's (API keys, tokens) gets through.
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # str/bytes hashes (set order) must agree across workers
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",  # OpenBLAS thread creation fails under an address-space limit
    "MKL_NUM_THREADS": "1",
}


class _Spawner:
    """Starts every worker process from one long-lived thread per process. The workers' parent-death signal
    (``PR_SET_PDEATHSIG``) and bwrap's ``--die-with-parent`` fire when the *thread* that forked them exits, so a
    worker (re)started from a short-lived thread (a ``ThreadPoolExecutor`` of reward threads) would die with that
    thread. This thread ends only with the process, which keeps "the workers die with the trainer"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._jobs: queue.SimpleQueue | None = None
        os.register_at_fork(after_in_child=self._forget)  # the thread does not exist in a forked child

    def _forget(self) -> None:
        self._lock, self._pid, self._jobs = threading.Lock(), None, None

    def call(self, fn):
        with self._lock:
            if self._pid != os.getpid():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                threading.Thread(
                    target=self._serve, args=(self._jobs,), name="rlif-sandbox-spawner", daemon=True
                ).start()
            jobs = self._jobs
        done: Future = Future()
        jobs.put((fn, done))
        return done.result()

    @staticmethod
    def _serve(jobs: queue.SimpleQueue) -> None:
        while True:
            fn, done = jobs.get()
            try:
                done.set_result(fn())
            except BaseException as error:  # handed to the caller
                done.set_exception(error)


_spawner = _Spawner()
_session_lock = threading.Lock()
_session: dict[str, object] = {"pid": None, "dir": None, "lock": None}


SESSION_PREFIX = "rlif-sandbox-"


def _session_dir() -> str:
    """This process's directory for its workers' base directories, removed when the process exits. A forked child
    makes its own inside its parent's: a child that ends with ``os._exit`` (multiprocessing, data-loader workers)
    runs no clean-up, and the parent's exit then removes what it left. The owner holds an ``flock`` on it for its
    whole life (the kernel drops it when the owner dies, whatever kills it); the first pool a process starts removes
    the directories of owners that died without cleaning up (:func:`remove_stale_sessions`)."""
    with _session_lock:
        if _session["pid"] != os.getpid():
            parent = _session["dir"] if _session["dir"] and os.path.isdir(str(_session["dir"])) else None
            if parent is None:
                remove_stale_sessions(tempfile.gettempdir())
            path = tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{os.getpid()}-", dir=parent)
            os.chmod(path, 0o711)  # a worker that drops to the sandbox uid must pass through to its run directory
            lock = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(lock, fcntl.LOCK_EX)
            _session.update(pid=os.getpid(), dir=path, lock=lock)
            atexit.register(_remove_session_dir, path, os.getpid())
        return str(_session["dir"])


def remove_stale_sessions(temp_dir: str) -> list[str]:
    """Remove the session directories in ``temp_dir`` whose owner is dead: its pid (in the name) no longer runs *and*
    its lock is free (a live owner, even one in another pid namespace sharing this directory, holds it; a forked
    child still alive keeps it too). A directory of a live pool is never touched. Returns what was removed."""
    removed = []
    try:
        names = [name for name in os.listdir(temp_dir) if name.startswith(SESSION_PREFIX)]
    except OSError:
        return removed
    for name in names:
        pid = name[len(SESSION_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        path = os.path.join(temp_dir, name)
        try:
            lock = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            continue
        try:
            wipe.remove_tree(path)
            removed.append(path)
        except OSError:
            logger.warning("verl-rlif sandbox: could not remove the stale session directory %s", path)
        finally:
            os.close(lock)
    if removed:
        logger.info("verl-rlif sandbox: removed %d session directories of dead processes", len(removed))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _printable(text: object) -> str:
    """A worker's message as one bounded, escaped line: it may quote what a program wrote (no log forgery)."""
    return repr(str(text))[:200]


def _remove_session_dir(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        _remove_quietly(path)


def _remove_quietly(path: str) -> None:
    """Remove a directory programs wrote into (any depth, links never followed); log, never raise, on failure."""
    try:
        wipe.remove_tree(path)
    except Exception:  # clean-up runs from close() and atexit: it must never take the caller down
        logger.exception("verl-rlif sandbox: could not remove %s", path)


def _bwrap_prefix(base_dir: str, size_bytes: int, uid: int) -> list[str]:
    """The bubblewrap command line that wraps a worker, or [] when ``bwrap`` is not installed. The worker runs as
    ``uid`` in a user namespace (no capabilities), sees only read-only Python and system libraries, a fresh
    /proc of its own pid namespace, no network, and a size-limited tmpfs as its private base directory."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return []
    # no --new-session: the worker already starts a session without a terminal (start_new_session), and staying in
    # bwrap's process group lets one killpg take bwrap, the namespace's init and the worker together
    args = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(uid), "--gid", str(uid), "--die-with-parent"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    read_only = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(PACKAGE_DIR), *SYSTEM_PATHS}
    for path in sorted(read_only):
        args += ["--ro-bind-try", path, path]
    return args + ["--size", str(size_bytes), "--tmpfs", base_dir, "--chdir", base_dir]


class _Worker:
    """One zygote process and its pipes; used by one thread at a time (the pool hands it out)."""

    def __init__(self, settings: SandboxConfig, index: int) -> None:
        self.settings = settings
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.base_dir: str | None = None
        self.hello: dict = {}
        self.namespaces = "off (rlif.sandbox.use_namespaces=false)"

    def _config(self) -> dict:
        s = self.settings
        return {
            "base_dir": self.base_dir,
            "memory_limit_mb": s.memory_limit_mb,
            "file_size_limit_mb": s.file_size_limit_mb,
            "open_files_limit": s.open_files_limit,
            "output_limit_bytes": s.output_limit_bytes,
            "float_digits": s.float_significant_digits,
            "uid": s.sandbox_uid,
            "tmpfs": self.namespaces.startswith("active"),  # bubblewrap mounted a size-limited tmpfs there
        }

    def start(self) -> dict:
        self.close()  # a worker that died on its own still has its directory
        self.base_dir = tempfile.mkdtemp(prefix=f"worker{self.index}-", dir=_session_dir())
        wrapper = []
        if self.settings.use_namespaces:
            size = self.settings.file_size_limit_mb * 2**20
            wrapper = _bwrap_prefix(self.base_dir, size, self.settings.sandbox_uid)
            self.namespaces = "unavailable: bwrap not found" if not wrapper else "active (bubblewrap)"
        hello, error = self._launch(wrapper)
        if hello is None and wrapper:  # namespaces refused (typical in containers): without them
            self.namespaces = f"unavailable: {error}"
            hello, error = self._launch([])
        if hello is None:
            self.close()
            raise SandboxUnavailable(f"the sandbox worker did not start: {error}")
        self.hello = hello
        return hello

    def _launch(self, wrapper: list[str]) -> tuple[dict | None, str]:
        command = [*wrapper, sys.executable, "-s", str(ZYGOTE)]  # config on stdin: argv is world-readable
        stderr = tempfile.TemporaryFile()
        self.proc = _spawner.call(
            lambda: subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=ENVIRONMENT,
                cwd=self.base_dir,
                start_new_session=True,  # its own process group: one kill takes the worker and anything under it
            )
        )
        try:
            protocol.send(self.proc.stdin.fileno(), self._config())
            hello = protocol.receive(self.proc.stdout.fileno(), time.monotonic() + STARTUP_DEADLINE_S)
        except (BrokenPipeError, EOFError):  # it died at once (bwrap refused): its stderr says why
            hello = None
        if hello is None or hello.get("probe") != "OUT:42":
            self._kill()
            stderr.seek(0)
            reason = stderr.read().decode(errors="replace").strip().splitlines()
            stderr.close()
            probe = "" if hello is None else f"probe program gave {hello.get('probe')!r}"
            if hello and hello.get("warnings"):  # why the child failed (e.g. its setup step), in the worker's words
                probe += f" ({'; '.join(map(_printable, hello['warnings']))})"
            return None, (reason[-1] if reason else "") or probe or "no hello"
        stderr.close()
        return hello, ""

    def request(self, program: str, inputs: list[str], fn_name: str | None, timeout_s: float) -> list[str] | None:
        """Signatures, or None when the worker missed its deadline (it is killed then; :meth:`start` brings up a
        new one). ``EOFError`` when the worker was gone (killed from outside): the program can be retried."""
        message = {"source": program, "fn_name": fn_name, "inputs": inputs, "timeout_s": timeout_s}
        deadline = time.monotonic() + len(inputs) * (timeout_s + 1.0) + REQUEST_SLACK_S
        try:
            protocol.send(self.proc.stdin.fileno(), message)
            reply = protocol.receive(self.proc.stdout.fileno(), deadline)
        except (BrokenPipeError, EOFError):
            self.close()
            raise EOFError(f"sandbox worker {self.index} was gone") from None
        except (OSError, ValueError):
            reply = None
        if reply is None or len(reply.get("signatures", ())) != len(inputs):
            logger.error("verl-rlif sandbox: worker %d failed or missed its deadline; restarting it", self.index)
            self.close()
            return None
        for warning in reply.get("warnings", ()):
            logger.warning("verl-rlif sandbox worker %d: %s", self.index, _printable(warning))
        if reply.get("retire"):  # it could not wipe its directory and exits: the next request gets a fresh one
            self.close()
        return [str(s) for s in reply["signatures"]]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Kill the process but keep its pipes open: the thread with a request in flight reads EOF from them (and
        then closes them); closed here, their descriptor numbers could go to the next worker's pipes meanwhile."""
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def _kill(self) -> None:
        self.stop()
        proc, self.proc = self.proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                pipe.close()

    def close(self) -> None:
        """Kill the worker and remove its directory; never raises (a failed removal is logged)."""
        base_dir, self.base_dir = self.base_dir, None
        try:
            self._kill()
        except Exception:
            logger.exception("verl-rlif sandbox: could not stop worker %d", self.index)
        if base_dir is not None:
            _remove_quietly(base_dir)


def _close_workers(workers: list[_Worker], owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked copy of the pool: the workers and directories are the parent's
        return
    for worker in workers:
        worker.close()


class LocalExecutor(Executor):
    """``settings.workers`` zygotes on this node; thread-safe, started on first use or by :meth:`start`."""

    def __init__(self, settings: SandboxConfig) -> None:
        super().__init__(settings)
        self._workers = [_Worker(settings, i) for i in range(settings.workers)]
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._start_lock = threading.RLock()  # start() closes everything when it refuses
        self._started = False
        self._generation = 0  # counts close(): a worker handed out before a close() is not returned after it
        self._lent: set[_Worker] = set()  # workers with a request in flight
        self._expected: tuple[dict, str] = ({}, "")
        # never closed (garbage-collected, or still open at interpreter exit): workers and directories go anyway
        weakref.finalize(self, _close_workers, self._workers, self.owner_pid)

    def start(self) -> None:
        if os.getpid() != self.owner_pid:
            raise SandboxUnavailable("a sandbox executor cannot be used in a forked copy of its process")
        with self._start_lock:
            if self._started:
                return
            try:
                hellos = [worker.start() for worker in self._workers]
            except SandboxUnavailable:
                self.close()
                raise
            self._expected = (hellos[0]["layers"], self._workers[0].namespaces)
            if any((h["layers"], w.namespaces) != self._expected for h, w in zip(hellos, self._workers, strict=True)):
                self.close()
                raise SandboxUnavailable("verl-rlif sandbox: the workers came up with different isolation layers")
            self.layers = self._layer_report(*self._expected)
            self._check_required()
            for worker in self._workers:
                self._idle.put(worker)
            self._started = True

    def _layer_report(self, layers: dict, namespaces: str) -> dict[str, str]:
        s = self.settings
        return {
            "spawned_workers": f"active ({s.workers} fresh interpreters, reused)",
            "session": "active (new session per program, process group killed)",
            "rlimits": f"active (address space +{s.memory_limit_mb} MiB, CPU, file size {s.file_size_limit_mb} MiB, "
            f"{s.open_files_limit} files, no core dumps)",
            "env_allowlist": f"active ({', '.join(sorted(ENVIRONMENT))})",
            "private_dir": "active (fresh per program, wiped afterwards)",
            **layers,
            "namespaces": namespaces,
        }

    def _check_required(self) -> None:
        missing = [
            name
            for name in self.settings.required_layers
            if not self.layers.get(name, "").startswith(("active", "not needed"))
        ]
        if missing and not self.settings.allow_insecure:
            self.close()
            details = "; ".join(f"{name}: {self.layers.get(name)}" for name in missing)
            raise SandboxUnavailable(
                f"verl-rlif sandbox: required isolation layer(s) {missing} cannot be established here ({details}). "
                f"Remove them from rlif.sandbox.required_layers only if this node may run model code with less "
                f"isolation, use rlif.sandbox.backend=sandbox_fusion, or set rlif.sandbox.allow_insecure=true for "
                f"trusted debugging"
            )
        if missing:
            logger.warning(
                "verl-rlif sandbox: INSECURE: running model-generated code without required layer(s) %s because "
                "rlif.sandbox.allow_insecure=true; use this for trusted debugging only",
                missing,
            )
        logger.info("verl-rlif sandbox (local, %d workers): %s", self.settings.workers, self.describe())

    def _run(self, program: str, inputs: list[str], fn_name: str | None) -> list[str]:
        self.start()
        with self._start_lock:
            idle, generation = self._idle, self._generation
        worker = idle.get()
        with self._start_lock:
            self._lent.add(worker)
        try:
            for _attempt in range(2):  # a worker killed from outside gets one replacement; the program never ran
                if generation != self._generation or not self._ready(worker):
                    return [SANDBOX_ERROR] * len(inputs)
                try:
                    signatures = worker.request(program, inputs, fn_name, self.settings.timeout_per_input_s)
                    return signatures if signatures is not None else [SANDBOX_ERROR] * len(inputs)
                except EOFError:
                    logger.warning("verl-rlif sandbox: worker %d was gone; restarting it", worker.index)
            return [SANDBOX_ERROR] * len(inputs)
        finally:
            with self._start_lock:
                self._lent.discard(worker)
                if generation == self._generation:
                    self._idle.put(worker)
                else:  # the pool was closed meanwhile (and maybe restarted with new workers): this one is done
                    worker.close()

    def _ready(self, worker: _Worker) -> bool:
        """Whether ``worker`` runs (restarted if needed) with the layers the pool started with."""
        if worker.alive:
            return True
        try:
            worker.start()
        except Exception:  # e.g. no space for its directory, fork failing under load
            logger.exception("verl-rlif sandbox: could not restart a worker")
            return False
        if (worker.hello["layers"], worker.namespaces) != self._expected:
            logger.error("verl-rlif sandbox: a restarted worker has other layers; refusing to use it")
            worker.close()
            return False
        return True

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def close(self) -> None:
        with self._start_lock:
            if os.getpid() == self.owner_pid:
                for worker in self._lent:  # its request fails with EOF; that thread then closes the worker
                    worker.stop()
            _close_workers([worker for worker in self._workers if worker not in self._lent], self.owner_pid)
            self._lent = set()
            # new worker objects: a request still in flight holds an old one, and what it does to that one on its
            # way out can no longer touch the workers of the next start()
            self._workers[:] = [_Worker(self.settings, i) for i in range(self.settings.workers)]
            self._started = False
            self._generation += 1
            self._idle = queue.Queue()
