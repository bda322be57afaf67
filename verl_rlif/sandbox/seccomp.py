"""A default-deny seccomp-BPF filter for sandboxed programs, assembled here and loaded with ``prctl`` (stdlib +
ctypes only).

Allowed: the calls in :data:`ALLOWED` (what CPython programs need: their own memory, descriptors, threads,
signals to themselves, time, and files under Landlock), checked against a trace of ordinary solutions
(``tests/sandbox/seccomp_trace.txt``), and the calls in :data:`FILTERED` only with harmless arguments: ``clone`` for
threads (``CLONE_THREAD``, no namespace flags), ``prlimit64`` and ``sched_setaffinity`` for the calling process
only, ``prctl`` for names and reading state (never ``PR_SET_PDEATHSIG``), ``fcntl``/``ioctl`` with listed commands,
``socketpair`` of ``AF_UNIX`` only, ``sendto`` without an address, ``open``/``openat`` without ``O_TMPFILE``.
Refused with ``EPERM``: the calls in :data:`DENIED` (processes, sockets and addressed sends, signals to any
process, tracing, namespaces and mounts, IPC, io_uring, bpf, file watches and metadata, memfds, kernel surfaces).
Refused with ``ENOSYS``: every other call, every number this table does not know (a newer kernel's
``open_tree_attr``, ``file_setattr``, ...), and ``clone3`` (so that libc falls back to ``clone``, whose flags a
filter can read). A foreign architecture (e.g. the i386 ABI on x86_64) kills the process; x32 system calls are
refused.

The dispatch is a binary search over the sorted numbers (about 9 comparisons per call). Built once per worker
process (the instructions are plain bytes) and installed in each forked child in one ``prctl`` call, after
``PR_SET_NO_NEW_PRIVS``. Supported: x86_64 and aarch64; elsewhere :func:`filter_program` raises and the layer is
reported unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# BPF opcodes (linux/filter.h, linux/bpf_common.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS = 0x20
_JEQ_K, _JGE_K, _JSET_K = 0x15, 0x35, 0x45
_RET_K, _JA = 0x06, 0x05
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


# Every number the filter names. Numbers from 424 on are the same on every architecture (Linux 5.1 unified them);
# below that, one row per call: name, x86_64 number, aarch64 number ("-": the architecture has no such call).
# Checked against the kernel headers by tests/sandbox/test_seccomp_allowlist.py where they are installed.
SHARED_NUMBERS = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "close_range": 436, "openat2": 437, "pidfd_getfd": 438, "faccessat2": 439,
    "process_madvise": 440, "epoll_pwait2": 441, "mount_setattr": 442, "quotactl_fd": 443, "memfd_secret": 447,
    "futex_waitv": 449, "fchmodat2": 452, "setxattrat": 463, "removexattrat": 466, "open_tree_attr": 467,
    "file_getattr": 468, "file_setattr": 469,
}  # fmt: skip
_ROWS = """
read 0 63 | write 1 64 | open 2 - | close 3 57 | stat 4 - | fstat 5 80 | lstat 6 - | poll 7 - | lseek 8 62
mmap 9 222 | mprotect 10 226 | munmap 11 215 | brk 12 214 | rt_sigaction 13 134 | rt_sigprocmask 14 135
rt_sigreturn 15 139 | ioctl 16 29 | pread64 17 67 | pwrite64 18 68 | readv 19 65 | writev 20 66 | access 21 -
pipe 22 - | select 23 - | sched_yield 24 124 | mremap 25 216 | msync 26 227 | mincore 27 232 | madvise 28 233
shmget 29 194 | shmat 30 196 | shmctl 31 195 | dup 32 23 | dup2 33 - | pause 34 - | nanosleep 35 101
getitimer 36 102 | alarm 37 - | setitimer 38 103 | getpid 39 172 | sendfile 40 71 | socket 41 198
connect 42 203 | accept 43 202 | sendto 44 206 | recvfrom 45 207 | sendmsg 46 211 | recvmsg 47 212
shutdown 48 210 | bind 49 200 | listen 50 201 | getsockname 51 204 | getpeername 52 205 | socketpair 53 199
getsockopt 55 209 | clone 56 220 | fork 57 - | vfork 58 - | execve 59 221 | exit 60 93 | kill 62 129
uname 63 160 | semget 64 190 | semop 65 193 | semctl 66 191 | msgget 68 186 | msgsnd 69 189 | msgrcv 70 188
msgctl 71 187 | fcntl 72 25 | flock 73 32 | fsync 74 82 | fdatasync 75 83 | truncate 76 45 | ftruncate 77 46
getcwd 79 17 | chdir 80 49 | fchdir 81 50 | rename 82 - | mkdir 83 - | rmdir 84 - | link 86 - | unlink 87 -
symlink 88 - | readlink 89 - | chmod 90 - | fchmod 91 52 | chown 92 - | fchown 93 55 | lchown 94 -
umask 95 166 | gettimeofday 96 169 | getrlimit 97 163 | getrusage 98 165 | sysinfo 99 179 | times 100 153
ptrace 101 117 | getuid 102 174 | syslog 103 116 | getgid 104 176 | geteuid 107 175 | getegid 108 177
setpgid 109 154 | getppid 110 173 | getpgrp 111 - | setsid 112 157 | getgroups 115 158 | getresuid 118 148
getresgid 120 150 | getpgid 121 155 | capget 125 90 | getsid 124 156 | rt_sigpending 127 136 | rt_sigtimedwait 128 137
rt_sigqueueinfo 129 138 | rt_sigsuspend 130 133 | sigaltstack 131 132 | utime 132 - | mknod 133 - | uselib 134 -
personality 135 92 | statfs 137 43 | fstatfs 138 44 | getpriority 140 141 | setpriority 141 140
sched_setparam 142 118 | sched_getparam 143 121 | sched_setscheduler 144 119 | sched_getscheduler 145 120
sched_get_priority_max 146 125 | sched_get_priority_min 147 126 | mlockall 151 230 | vhangup 153 58
modify_ldt 154 - | pivot_root 155 41 | prctl 157 167 | adjtimex 159 171 | setrlimit 160 164 | chroot 161 51
acct 163 89 | settimeofday 164 170 | mount 165 40 | umount2 166 39 | swapon 167 224 | swapoff 168 225
reboot 169 142 | sethostname 170 161 | setdomainname 171 162 | iopl 172 - | ioperm 173 - | init_module 175 105
delete_module 176 106 | quotactl 179 60 | nfsservctl 180 42 | gettid 186 178 | setxattr 188 5 | lsetxattr 189 6
fsetxattr 190 7 | removexattr 197 14 | lremovexattr 198 15 | fremovexattr 199 16 | tkill 200 130 | time 201 -
futex 202 98 | sched_setaffinity 203 122 | sched_getaffinity 204 123 | lookup_dcookie 212 18
epoll_create 213 - | getdents64 217 61 | set_tid_address 218 96 | restart_syscall 219 128 | semtimedop 220 192
fadvise64 221 223 | clock_settime 227 112 | clock_gettime 228 113 | clock_getres 229 114
clock_nanosleep 230 115 | exit_group 231 94 | epoll_wait 232 - | epoll_ctl 233 21 | tgkill 234 131
utimes 235 - | mbind 237 235 | get_mempolicy 239 236 | mq_open 240 180 | mq_unlink 241 181 | kexec_load 246 104
add_key 248 217 | request_key 249 218 | keyctl 250 219 | ioprio_set 251 30 | inotify_init 253 -
inotify_add_watch 254 27 | inotify_rm_watch 255 28 | migrate_pages 256 238 | openat 257 56 | mkdirat 258 34
mknodat 259 33 | fchownat 260 54 | futimesat 261 - | newfstatat 262 79 | unlinkat 263 35 | renameat 264 38
linkat 265 37 | symlinkat 266 36 | readlinkat 267 78 | fchmodat 268 53 | faccessat 269 48 | pselect6 270 72
ppoll 271 73 | unshare 272 97 | set_robust_list 273 99 | get_robust_list 274 100 | move_pages 279 239
utimensat 280 88 | epoll_pwait 281 22 | eventfd 284 - | fallocate 285 47 | accept4 288 242 | eventfd2 290 19
epoll_create1 291 20 | dup3 292 24 | pipe2 293 59 | inotify_init1 294 26 | preadv 295 69 | pwritev 296 70
rt_tgsigqueueinfo 297 240 | perf_event_open 298 241 | fanotify_init 300 262 | fanotify_mark 301 263
prlimit64 302 261 | name_to_handle_at 303 264 | open_by_handle_at 304 265 | clock_adjtime 305 266
sendmmsg 307 269 | setns 308 268 | getcpu 309 168 | process_vm_readv 310 270 | process_vm_writev 311 271
kcmp 312 272 | finit_module 313 273 | sched_setattr 314 274 | renameat2 316 276 | getrandom 318 278
memfd_create 319 279 | kexec_file_load 320 294 | bpf 321 280 | execveat 322 281 | userfaultfd 323 282
membarrier 324 283 | copy_file_range 326 285 | preadv2 327 286 | pwritev2 328 287 | statx 332 291 | rseq 334 293
"""
ARCHES = ("x86_64", "aarch64")


def _numbers() -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {arch: dict(SHARED_NUMBERS) for arch in ARCHES}
    for row in _ROWS.replace("\n", " | ").split("|"):
        if row.strip():
            name, *numbers = row.split()
            for arch, number in zip(ARCHES, numbers, strict=True):
                if number != "-":
                    table[arch][name] = int(number)
    return table


SYSCALLS = _numbers()

# The allowlist: what CPython programs need (checked against a trace of ordinary solutions, seccomp_trace.txt), all
# confined to the program's own process, memory, descriptors and (under Landlock) run directory.
ALLOWED = """
read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek close close_range dup dup2 dup3 pipe
pipe2 stat fstat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 readlink readlinkat
getcwd chdir fchdir getdents64 mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 link linkat symlink
symlinkat ftruncate fallocate fsync fdatasync flock fadvise64 sendfile copy_file_range umask
mmap munmap mremap mprotect madvise brk msync mincore mbind get_mempolicy membarrier
futex futex_waitv set_robust_list get_robust_list rseq set_tid_address sched_yield sched_getaffinity sched_getparam
sched_getscheduler sched_get_priority_max sched_get_priority_min getpriority getcpu
exit exit_group restart_syscall rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait
sigaltstack pause alarm setitimer getitimer
nanosleep clock_nanosleep clock_gettime clock_getres gettimeofday time times getrusage sysinfo uname
capget getpid gettid getppid getuid geteuid getgid getegid getresuid getresgid getgroups getpgrp getpgid getsid
getrlimit setrlimit getrandom
poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2
recvfrom recvmsg shutdown getsockopt getsockname getpeername
""".split()
# Allowed only with these arguments (see filter_program): one call both needed and dangerous.
FILTERED = (
    "clone",
    "prlimit64",
    "prctl",
    "fcntl",
    "ioctl",
    "socketpair",
    "sendto",
    "sched_setaffinity",
    "open",
    "openat",
)
# O_TMPFILE: an unnamed file that Landlock does not count as created; refused, so that where no size-limited
# filesystem exists nothing at all can be written (Python's tempfile then falls back to a named file)
O_TMPFILE_BIT = 0o20000000
# Refused with EPERM (a clear "not allowed"); every other call, and every number this table does not know (a newer
# kernel's), is refused with ENOSYS, which libc and Python treat as "not available here". clone3 too is ENOSYS,
# so that libc falls back to clone, whose flags the filter can read.
DENIED = (
    "fork vfork execve execveat socket connect bind listen accept accept4 sendmsg sendmmsg ptrace process_vm_readv "
    "process_vm_writev process_madvise pidfd_open pidfd_getfd pidfd_send_signal kill tkill tgkill rt_sigqueueinfo "
    "rt_tgsigqueueinfo setsid setpgid unshare setns mount umount2 pivot_root chroot move_mount open_tree "
    "open_tree_attr fsopen fsmount fsconfig fspick mount_setattr bpf perf_event_open userfaultfd io_uring_setup "
    "io_uring_enter io_uring_register keyctl add_key request_key kexec_load kexec_file_load init_module "
    "finit_module delete_module reboot swapon swapoff kcmp name_to_handle_at open_by_handle_at iopl ioperm mknod "
    "mknodat settimeofday clock_settime clock_adjtime adjtimex sethostname setdomainname acct quotactl syslog "
    "vhangup sched_setscheduler sched_setparam sched_setattr setpriority mlockall uselib personality modify_ldt "
    "lookup_dcookie nfsservctl ioprio_set migrate_pages move_pages shmget shmat shmctl semget semop semtimedop "
    "semctl msgget msgsnd msgrcv msgctl mq_open mq_unlink memfd_create memfd_secret openat2 "
    # watching the host's files
    "inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_init fanotify_mark "
    # file metadata: Landlock does not mediate mode, owner, times, extended attributes or (below ABI 3) truncate(),
    # so a program running as root or as the trainer's uid could otherwise change any file it can name
    "chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat truncate utime utimes futimesat utimensat "
    "setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr setxattrat removexattrat quotactl_fd "
    "file_getattr file_setattr"
).split()
# fcntl commands allowed: duplicate, descriptor and status flags (O_ASYNC is harmless without an owner), locks,
# pipe size and seals read-only. Refused: F_SETOWN/F_SETOWN_EX/F_SETSIG (signals to any pid), F_NOTIFY
# (directory notifications), F_SETLEASE, F_SETPIPE_SZ (pipe memory outside every limit), F_ADD_SEALS.
FCNTL_ALLOWED = (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 36, 37, 38, 1030, 1032, 1034)
F_SETOWN, F_SETSIG, F_SETOWN_EX, F_NOTIFY, F_SETPIPE_SZ = 8, 10, 15, 1026, 1031
# ioctl commands allowed: terminal queries (isatty, terminal size), FIONREAD, FIONBIO, FIONCLEX/FIOCLEX. Refused:
# everything else, among them FIOSETOWN/SIOCSPGRP (signals) and FS_IOC_SETFLAGS/FS_IOC_FSSETXATTR (chattr).
IOCTL_ALLOWED = (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)
FIOSETOWN, SIOCSPGRP = 0x8901, 0x8902
FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSSETXATTR = 0x40086602, 0x40046602, 0x401C5820
# prctl options allowed: names, reading state. Refused: PR_SET_PDEATHSIG (the death signal stays SIGKILL),
# PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_MM, ... everything else.
PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_NAME, PR_GET_NAME = 2, 3, 15, 16
PRCTL_ALLOWED = (PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_NAME, PR_GET_NAME, 21, 23, 30, 39, 42, 0x53564D41)
AF_UNIX = 1
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def machine() -> str | None:
    return _MACHINES.get(platform.machine().lower())


class _Assembler:
    """Classic BPF with symbolic targets: conditional jumps only skip 0 or 1 instruction, every longer jump is an
    unconditional ``JA`` (32-bit offset), so the filter can grow past the 255-instruction reach of ``jt``/``jf``."""

    def __init__(self) -> None:
        self.code: list[tuple] = []
        self.labels: dict[str, int] = {}

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, 0, 0, offset))

    def skip_unless(self, op: int, k: int) -> None:
        """Run the next instruction when the condition holds, else skip it."""
        self.code.append((op, 0, 1, k))

    def skip_if(self, op: int, k: int) -> None:
        """Skip the next instruction when the condition holds."""
        self.code.append((op, 1, 0, k))

    def goto(self, label: str) -> None:
        self.code.append((_JA, None, None, label))

    def ret(self, value: int) -> None:
        self.code.append((_RET_K, 0, 0, value))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = []
        for at, (op, jt, jf, k) in enumerate(self.code):
            if op == _JA:
                jt, jf, k = 0, 0, self.labels[k] - at - 1
            out.append(struct.pack("<HBBI", op, jt, jf, k))
        if len(out) > 4096:
            raise ValueError("seccomp filter longer than the kernel's 4096 instructions")
        return b"".join(out)


def _actions(table: dict[str, int]) -> dict[int, str]:
    """Syscall number -> label (``allow``, ``eperm``, ``enosys`` or an argument check's name)."""
    actions = {table[name]: "eperm" for name in DENIED if name in table}
    actions.update({table[name]: "allow" for name in ALLOWED if name in table})
    actions.update({table[name]: name for name in FILTERED if name in table})
    actions[table["clone3"]] = "enosys"
    return actions


def _dispatch(asm: _Assembler, cases: list[tuple[int, str]]) -> None:
    """A binary search over the sorted (number, label) cases; a number not among them goes to ``enosys``."""
    if len(cases) <= 4:
        for number, target in cases:
            asm.skip_unless(_JEQ_K, number)
            asm.goto(target)
        asm.goto("enosys")
        return
    middle = len(cases) // 2
    upper = f"upper{len(asm.code)}"
    asm.skip_unless(_JGE_K, cases[middle][0])
    asm.goto(upper)
    _dispatch(asm, cases[:middle])
    asm.label(upper)
    _dispatch(asm, cases[middle:])


def _one_of(asm: _Assembler, offset: int, allowed: tuple[int, ...], otherwise: str = "eperm") -> None:
    asm.load(offset)
    for value in allowed:
        asm.skip_unless(_JEQ_K, value)
        asm.goto("allow")
    asm.goto(otherwise)


def filter_program(arch: str | None = None) -> bytes:
    """The filter's instructions (``struct sock_filter[]``) for ``arch`` (default: this machine)."""
    arch = arch or machine()
    if arch not in SYSCALLS:
        raise OSError(f"no seccomp syscall table for machine {platform.machine()!r} (x86_64 and aarch64 only)")
    asm = _Assembler()
    asm.load(_ARCH)
    asm.skip_unless(_JEQ_K, AUDIT_ARCH[arch])
    asm.goto("arch_ok")
    asm.ret(RET_KILL_PROCESS)  # a foreign ABI (i386 on x86_64): its numbers mean other calls
    asm.label("arch_ok")
    asm.load(_NR)
    if arch == "x86_64":
        asm.skip_unless(_JGE_K, X32_SYSCALL_BIT)
        asm.goto("eperm")
    _dispatch(asm, sorted(_actions(SYSCALLS[arch]).items()))
    for name in FILTERED:
        asm.label(name)
        _CHECKS[name](asm)
    asm.label("allow")
    asm.ret(RET_ALLOW)
    asm.label("eperm")
    asm.ret(RET_ERRNO | errno.EPERM)
    asm.label("enosys")
    asm.ret(RET_ERRNO | errno.ENOSYS)
    return asm.assemble()


def _only_zero(index: int):
    """Allow when the 64-bit argument ``index`` is 0 (a NULL address, pid 0 = itself), else EPERM."""

    def check(asm: _Assembler) -> None:
        for offset in (_arg_low(index), _arg_high(index)):
            asm.load(offset)
            asm.skip_if(_JEQ_K, 0)
            asm.goto("eperm")
        asm.goto("allow")

    return check


def _without_bit(asm: _Assembler, offset: int, bit: int) -> None:
    asm.load(offset)
    asm.skip_unless(_JSET_K, bit)
    asm.goto("eperm")
    asm.goto("allow")


def _clone(asm: _Assembler) -> None:
    """Threads only: CLONE_THREAD set and no namespace flags."""
    asm.load(_arg_low(0))
    asm.skip_unless(_JSET_K, CLONE_NAMESPACES)
    asm.goto("eperm")
    asm.skip_unless(_JSET_K, CLONE_THREAD)
    asm.goto("allow")
    asm.goto("eperm")


_CHECKS = {
    "clone": _clone,
    # its own limits only (pid 0); the kernel then lets a process without CAP_SYS_RESOURCE lower a hard limit or
    # move a soft one up to it, never raise a hard one (children drop every capability first)
    "prlimit64": _only_zero(0),
    "sched_setaffinity": _only_zero(0),  # its own threads' CPUs only
    "sendto": _only_zero(4),  # on a connected socketpair only: no address, so no host datagram socket
    "prctl": lambda asm: _one_of(asm, _arg_low(0), PRCTL_ALLOWED),  # the option is an int: the low word decides
    "fcntl": lambda asm: _one_of(asm, _arg_low(1), FCNTL_ALLOWED),  # the command is an unsigned int
    "ioctl": lambda asm: _one_of(asm, _arg_low(1), IOCTL_ALLOWED),
    "socketpair": lambda asm: _one_of(asm, _arg_low(0), (AF_UNIX,)),
    "open": lambda asm: _without_bit(asm, _arg_low(1), O_TMPFILE_BIT),
    "openat": lambda asm: _without_bit(asm, _arg_low(2), O_TMPFILE_BIT),
}


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
