"""A seccomp-BPF filter for sandboxed programs, assembled here and loaded with ``prctl`` (stdlib + ctypes only).

The filter allows everything except (``EPERM``, or ``ENOSYS`` for ``clone3`` so that libc falls back to
``clone``): new processes (``fork``/``vfork``/``clone`` without ``CLONE_THREAD`` or with namespace flags,
``execve``), network sockets (``socket``; ``socketpair`` stays, it reaches nothing), signals to any process
(``kill``/``tgkill``/..., and asynchronous I/O signals: ``fcntl`` ``F_SETOWN``/``F_SETOWN_EX``/``F_SETSIG`` and
``ioctl`` ``FIOSETOWN``/``SIOCSPGRP``, which would let ``O_ASYNC`` deliver a chosen signal to any pid),
``setsid``/``setpgid`` (the parent kills the program by its process group), raising resource limits, tracing and
other processes' memory, CPU affinity of other processes (``sched_setaffinity`` only for pid 0, i.e. itself),
I/O priority, System V and POSIX message-queue IPC (which reach the host's IPC objects without an IPC
namespace), namespaces and mounts, io_uring, file metadata (mode, owner, times, extended attributes, inode flags
by ``ioctl`` ``FS_IOC_SETFLAGS``/``FS_IOC_FSSETXATTR``, ``truncate`` by name; ``ftruncate`` of its own files
stays), and the kernel surfaces a root process could otherwise reach
(modules, clock, reboot, swap, keys, bpf, perf, scheduling policy).
A foreign architecture (e.g. the i386 ABI on x86_64) kills the process; x32 system calls are refused.

Built once per worker process (the instructions are plain bytes) and installed in each forked child in one
``prctl`` call, after ``PR_SET_NO_NEW_PRIVS``. Supported: x86_64 and aarch64; elsewhere :func:`filter_program`
raises and the layer is reported unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# BPF opcodes (linux/filter.h, linux/bpf_common.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS = 0x20
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

CLONE_THREAD = 0x00010000
CLONE_NAMESPACES = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
X32_SYSCALL_BIT = 0x40000000

# offsets into struct seccomp_data: nr, arch, instruction pointer, then six 64-bit arguments (little-endian)
_NR, _ARCH = 0, 4


def _arg_low(i: int) -> int:
    return 16 + 8 * i


def _arg_high(i: int) -> int:
    return 16 + 8 * i + 4


DENIED = (
    "fork vfork execve execveat socket ptrace process_vm_readv process_vm_writev process_madvise pidfd_open "
    "pidfd_getfd pidfd_send_signal kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo setsid setpgid setrlimit "
    "unshare setns mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount fsconfig fspick "
    "mount_setattr bpf perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register keyctl add_key "
    "request_key kexec_load kexec_file_load init_module finit_module delete_module reboot swapon swapoff kcmp "
    "name_to_handle_at open_by_handle_at iopl ioperm mknod mknodat settimeofday clock_settime clock_adjtime "
    "adjtimex sethostname setdomainname acct quotactl syslog vhangup fanotify_init sched_setscheduler "
    "sched_setparam sched_setattr setpriority mlockall uselib personality modify_ldt lookup_dcookie nfsservctl "
    "ioprio_set migrate_pages move_pages shmget shmat shmctl semget semop semtimedop semctl msgget msgsnd msgrcv "
    "msgctl mq_open mq_unlink "
    # file metadata: Landlock does not mediate mode, owner, times, extended attributes or (below ABI 3) truncate(),
    # so a program running as root or as the trainer's uid could otherwise change any file it can name
    "chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat truncate utime utimes futimesat utimensat "
    "setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr setxattrat removexattrat quotactl_fd"
).split()
# fcntl/ioctl commands that choose who receives SIGIO (or the F_SETSIG signal) when I/O is ready on a descriptor
F_SETOWN, F_SETSIG, F_SETOWN_EX = 8, 10, 15
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
# ioctl commands that change inode flags (chattr +i/+a) or project quota ids: metadata Landlock does not mediate
FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSSETXATTR = 0x40086602, 0x40046602, 0x401C5820

# linux/arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h (checked against the headers
# by tests/sandbox/test_layers.py where they are installed)
SYSCALLS = {
    "x86_64": {
        "clone": 56, "clone3": 435, "prlimit64": 302, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
        "socket": 41, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "process_madvise": 440,
        "pidfd_open": 434, "pidfd_getfd": 438, "pidfd_send_signal": 424, "kill": 62, "tkill": 200, "tgkill": 234,
        "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "setsid": 112, "setpgid": 109, "setrlimit": 160,
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433,
        "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "reboot": 169, "swapon": 167, "swapoff": 168, "kcmp": 312, "name_to_handle_at": 303,
        "open_by_handle_at": 304, "iopl": 172, "ioperm": 173, "mknod": 133, "mknodat": 259, "settimeofday": 164,
        "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "sethostname": 170, "setdomainname": 171,
        "acct": 163, "quotactl": 179, "syslog": 103, "vhangup": 153, "fanotify_init": 300,
        "sched_setscheduler": 144, "sched_setparam": 142, "sched_setattr": 314, "setpriority": 141,
        "mlockall": 151, "uselib": 134, "personality": 135, "modify_ldt": 154, "lookup_dcookie": 212,
        "nfsservctl": 180, "fcntl": 72, "ioctl": 16, "sched_setaffinity": 203, "ioprio_set": 251,
        "migrate_pages": 256, "move_pages": 279, "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64,
        "semop": 65, "semtimedop": 220, "semctl": 66, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
        "mq_open": 240, "mq_unlink": 241, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
        "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "truncate": 76, "utime": 132, "utimes": 235,
        "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
        "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199, "setxattrat": 463, "removexattrat": 466,
        "quotactl_fd": 443,
    },
    "aarch64": {
        "clone": 220, "clone3": 435, "prlimit64": 261, "execve": 221, "execveat": 281, "socket": 198,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "process_madvise": 440,
        "pidfd_open": 434, "pidfd_getfd": 438, "pidfd_send_signal": 424, "kill": 129, "tkill": 130, "tgkill": 131,
        "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "setsid": 157, "setpgid": 154, "setrlimit": 164,
        "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "fsconfig": 431, "fspick": 433,
        "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219, "add_key": 217, "request_key": 218,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "reboot": 142, "swapon": 224, "swapoff": 225, "kcmp": 272, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "mknodat": 33, "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266,
        "adjtimex": 171, "sethostname": 161, "setdomainname": 162, "acct": 89, "quotactl": 60, "syslog": 116,
        "vhangup": 58, "fanotify_init": 262, "sched_setscheduler": 119, "sched_setparam": 118,
        "sched_setattr": 274, "setpriority": 140, "mlockall": 230, "personality": 92, "lookup_dcookie": 18,
        "nfsservctl": 42, "fcntl": 25, "ioctl": 29, "sched_setaffinity": 122, "ioprio_set": 30,
        "migrate_pages": 238, "move_pages": 239, "shmget": 194, "shmat": 196, "shmctl": 195, "semget": 190,
        "semop": 193, "semtimedop": 192, "semctl": 191, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
        "msgctl": 187, "mq_open": 180, "mq_unlink": 181, "fchmod": 52, "fchmodat": 53, "fchmodat2": 452,
        "fchown": 55, "fchownat": 54, "truncate": 45, "utimensat": 88, "setxattr": 5, "lsetxattr": 6,
        "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16, "setxattrat": 463,
        "removexattrat": 466, "quotactl_fd": 443,
    },
}  # fmt: skip
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def machine() -> str | None:
    return _MACHINES.get(platform.machine().lower())


class _Assembler:
    """Classic BPF with symbolic jump targets (offsets are relative to the next instruction, at most 255)."""

    def __init__(self) -> None:
        self.code: list[tuple] = []
        self.labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, None, None, offset))

    def jump(self, op: int, k: int, true: str | None, false: str | None) -> None:
        self.code.append((op, true, false, k))

    def ret(self, value: int, label: str | None = None) -> None:
        if label:
            self.labels[label] = len(self.code)
        self.code.append((_RET_K, None, None, value))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = []
        for at, (op, true, false, k) in enumerate(self.code):
            jt, jf = (0 if t is None else self.labels[t] - at - 1 for t in (true, false))
            if not (0 <= jt < 256 and 0 <= jf < 256):
                raise ValueError("seccomp filter jump out of range")
            out.append(struct.pack("<HBBI", op, jt, jf, k))
        return b"".join(out)


def filter_program(arch: str | None = None) -> bytes:
    """The filter's instructions (``struct sock_filter[]``) for ``arch`` (default: this machine)."""
    arch = arch or machine()
    if arch not in SYSCALLS:
        raise OSError(f"no seccomp syscall table for machine {platform.machine()!r} (x86_64 and aarch64 only)")
    table = SYSCALLS[arch]
    asm = _Assembler()
    asm.load(_ARCH)
    asm.jump(_JEQ_K, AUDIT_ARCH[arch], None, "kill")
    asm.load(_NR)
    if arch == "x86_64":
        asm.jump(_JGE_K, X32_SYSCALL_BIT, "eperm", None)
    asm.jump(_JEQ_K, table["clone"], "clone", None)
    asm.jump(_JEQ_K, table["prlimit64"], "prlimit", None)
    asm.jump(_JEQ_K, table["clone3"], "enosys", None)
    asm.jump(_JEQ_K, table["fcntl"], "fcntl", None)
    asm.jump(_JEQ_K, table["ioctl"], "ioctl", None)
    asm.jump(_JEQ_K, table["sched_setaffinity"], "affinity", None)
    for name in DENIED:
        if name in table:  # aarch64 has no fork, vfork, mknod, iopl, ...
            asm.jump(_JEQ_K, table[name], "eperm", None)
    asm.ret(RET_ALLOW)
    asm.label("clone")  # threads only: CLONE_THREAD set, no namespace flags
    asm.load(_arg_low(0))
    asm.jump(_JSET_K, CLONE_NAMESPACES, "eperm", None)
    asm.jump(_JSET_K, CLONE_THREAD, "allow", "eperm")
    asm.label("prlimit")  # reading limits only: new_limit (argument 2) must be NULL
    asm.load(_arg_low(2))
    asm.jump(_JEQ_K, 0, None, "eperm")
    asm.load(_arg_high(2))
    asm.jump(_JEQ_K, 0, "allow", "eperm")
    asm.label("fcntl")  # the command is an unsigned int: the low word decides
    asm.load(_arg_low(1))
    for command in (F_SETOWN, F_SETSIG, F_SETOWN_EX):
        asm.jump(_JEQ_K, command, "eperm", None)
    asm.ret(RET_ALLOW)
    asm.label("ioctl")
    asm.load(_arg_low(1))
    for command in (FIOSETOWN, SIOCSPGRP, FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSSETXATTR):
        asm.jump(_JEQ_K, command, "eperm", None)
    asm.ret(RET_ALLOW)
    asm.label("affinity")  # only its own threads' (pid 0): another process's CPUs are not the program's to pin
    asm.load(_arg_low(0))
    asm.jump(_JEQ_K, 0, "allow", "eperm")
    asm.ret(RET_ERRNO | errno.ENOSYS, "enosys")
    asm.ret(RET_ERRNO | errno.EPERM, "eperm")
    asm.ret(RET_ALLOW, "allow")
    asm.ret(RET_KILL_PROCESS, "kill")
    return asm.assemble()


_libc = ctypes.CDLL(None, use_errno=True)


def set_no_new_privs() -> None:
    """``PR_SET_NO_NEW_PRIVS``: required by unprivileged seccomp and Landlock; no exec can gain privileges."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """A filter ready to install: the buffer lives as long as this object (create it before forking)."""

    def __init__(self, arch: str | None = None) -> None:
        program = filter_program(arch)
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))

    def install(self) -> None:
        """Set no-new-privileges and load the filter on the calling thread (raises ``OSError`` on failure)."""
        set_no_new_privs()
        if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
