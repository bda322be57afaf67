"""Landlock rules for sandboxed programs (Linux >= 5.13; stdlib + ctypes only).

A worker opens the read-only paths once (``O_PATH`` descriptors it keeps); each forked child builds a fresh
ruleset from them plus its own private run directory and applies it (a rule added to a ruleset shared by the
worker would widen it for every later child). The ruleset handles every access right the kernel's ABI knows,
so everything not granted is denied: read (and execute) beneath the Python installation and the system library
directories, full access beneath the run directory except creating device nodes, nothing else (no ``/proc``,
no home directories, no ``/tmp``, not the worker's base directory or an earlier program's files). From ABI 4
(Linux 6.7) on, TCP bind and connect are denied; from ABI 6 (Linux 6.12) on, signals to processes outside the
sandbox and abstract unix sockets are denied ("scoped"); below that, seccomp refuses signals.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # same numbers on every architecture
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # all a file rule may hold
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
PRIVATE = ((1 << 16) - 1) & ~(FS_MAKE_CHAR | FS_MAKE_BLOCK | FS_IOCTL_DEV)
CREATE = FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_SYM  # no device nodes, ever

SYSTEM_READ_PATHS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32", "/usr/share/zoneinfo")
SYSTEM_READ_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/dev/null", "/dev/urandom", "/dev/zero")

MIN_FD = 10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock syscall {number}: {os.strerror(err)}")
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when Landlock is missing or disabled)."""
    try:
        return _syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    except OSError:
        return 0


def _fs_rights(abi: int) -> int:
    return _FS_BY_ABI[max(level for level in _FS_BY_ABI if level <= abi)]


class Ruleset:
    """Read-only ``read_paths`` (opened now); :meth:`restrict_self` adds private (read/write/create/remove) paths."""

    def __init__(self, read_paths: list[str]) -> None:
        self.abi = abi_version()
        if self.abi < 1:
            raise OSError("Landlock is not available (needs Linux >= 5.13 with landlock in the LSM list)")
        self.handled = _fs_rights(self.abi)
        attr = struct.pack("<Q", self.handled)
        if self.abi >= 4:
            attr += struct.pack("<Q", NET_BIND_TCP | NET_CONNECT_TCP)
        if self.abi >= 6:
            attr += struct.pack("<Q", SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
        self._attr = ctypes.create_string_buffer(attr, len(attr))
        self._rules: list[tuple[int, int]] = []  # (O_PATH descriptor, rights), kept open for every child
        for path in read_paths:
            try:
                low_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:  # a path this machine lacks grants nothing
                continue
            # above the descriptors a sandboxed child sets up (0-4), which would otherwise replace a low one
            fd = fcntl.fcntl(low_fd, fcntl.F_DUPFD_CLOEXEC, MIN_FD)
            os.close(low_fd)
            self._rules.append((fd, READ if os.path.isdir(path) else READ & FILE_RIGHTS))

    @property
    def network(self) -> bool:
        return self.abi >= 4

    @property
    def scoped(self) -> bool:
        return self.abi >= 6

    def _add(self, ruleset_fd: int, fd: int, rights: int) -> None:
        rule = struct.pack("<Qi", rights & self.handled, fd)
        buffer = ctypes.create_string_buffer(rule, len(rule))
        _syscall(SYS_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(RULE_PATH_BENEATH), buffer, ctypes.c_uint32(0))

    def restrict_self(self, private_paths: tuple[str, ...] | list[str] = (), create: bool = True) -> None:
        """Apply the read rules plus full access beneath each existing directory in ``private_paths`` to the calling
        process (needs no-new-privileges set first); without ``create``, nothing may be created there (where no
        size-limited filesystem bounds what a program writes in total). The ruleset is built here, so nothing is
        shared with others."""
        ruleset_fd = _syscall(SYS_CREATE_RULESET, self._attr, ctypes.c_size_t(len(self._attr)), ctypes.c_uint32(0))
        try:
            for fd, rights in self._rules:
                self._add(ruleset_fd, fd, rights)
            for path in private_paths:
                fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    self._add(ruleset_fd, fd, PRIVATE if create else PRIVATE & ~CREATE)
                finally:
                    os.close(fd)
            _syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
        finally:
            os.close(ruleset_fd)

    def descriptors(self) -> list[int]:
        """The read rules' ``O_PATH`` descriptors (a process that forks children must keep them open)."""
        return [fd for fd, _ in self._rules]

    def close(self) -> None:
        for fd, _ in self._rules:
            os.close(fd)
        self._rules = []
