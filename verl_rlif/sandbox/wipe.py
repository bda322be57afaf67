"""Removing a directory tree that a sandboxed program wrote (stdlib only: used by the worker and the trusted side).

Iterative with an explicit stack, so any depth works (``shutil.rmtree`` and a recursive walk hit Python's recursion
limit on a program's ``mkdir d; chdir d`` loop), with at most :data:`MAX_OPEN_DIRS` directories open: a deeper
directory is moved up to the top of the tree (``renameat``) and removed from there. Never follows a symbolic
link and never changes anything by name that a link could redirect: every directory is opened with
``O_NOFOLLOW | O_DIRECTORY`` and a permission a program took away is restored on the opened descriptor (or on an
``O_PATH`` descriptor of that very inode); root needs no permission and so changes none.
"""

from __future__ import annotations

import errno
import os

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_INODE = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN_DIRS = 32
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # replaced by a file or a link (or removed) meanwhile


def _open_dir(name: str, parent_fd: int) -> int | None:
    """The subdirectory ``name`` of ``parent_fd``, opened and writable by us; None when it is not a directory."""
    try:
        fd = os.open(name, DIRECTORY, dir_fd=parent_fd)
    except PermissionError:  # not readable by us: restore the permission on the inode, never on a name
        fd = _reopen_unreadable(name, parent_fd)
    except OSError as error:
        if error.errno in _GONE:
            return None
        raise
    if os.geteuid() != 0 and os.fstat(fd).st_mode & 0o700 != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def _reopen_unreadable(name: str, parent_fd: int) -> int:
    handle = os.open(name, _INODE, dir_fd=parent_fd)
    try:
        inode = f"/proc/self/fd/{handle}"  # the magic link names exactly the inode opened above
        os.chmod(inode, 0o700)
        return os.open(inode, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def _unlink_files(fd: int) -> list[str]:
    """Unlink everything in ``fd`` that is not a directory; return the subdirectories' names."""
    with os.scandir(fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    subdirs = []
    for name, is_dir in names:
        if is_dir:
            subdirs.append(name)
            continue
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            subdirs.append(name)
    return subdirs


def _move_to_top(name: str, parent_fd: int, top_fd: int, taken: int) -> tuple[str, int]:
    """Move a too-deep directory up to the top; returns its new name and the next free number."""
    while True:
        new = f".rlif-wipe-{taken}"
        try:
            os.rename(name, new, src_dir_fd=parent_fd, dst_dir_fd=top_fd)
            return new, taken + 1
        except OSError as error:  # that name exists at the top (a program chose it): take the next
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            taken += 1


def empty(top_fd: int) -> None:
    """Remove everything inside the open directory ``top_fd``; raises ``OSError`` when something stays."""
    frames: list[tuple[int, str, list[str]]] = [(os.dup(top_fd), "", _unlink_files(top_fd))]
    taken = 0
    try:
        while frames:
            fd, own_name, pending = frames[-1]
            if not pending:
                frames.pop()
                os.close(fd)
                if frames:
                    os.rmdir(own_name, dir_fd=frames[-1][0])
                continue
            name = pending.pop()
            if len(frames) >= MAX_OPEN_DIRS:
                new, taken = _move_to_top(name, fd, frames[0][0], taken)
                frames[0][2].append(new)
                continue
            sub = _open_dir(name, fd)
            if sub is None:
                _unlink_quietly(name, fd)
                continue
            frames.append((sub, name, []))
            frames[-1][2].extend(_unlink_files(sub))
    finally:
        for fd, _, _ in frames:
            os.close(fd)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def empty_path(path: str) -> None:
    """Remove everything inside the directory ``path`` (itself never a link)."""
    fd = os.open(path, DIRECTORY)
    try:
        empty(fd)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove the directory ``path`` and everything in it (nothing to do when it does not exist)."""
    try:
        empty_path(path)
    except FileNotFoundError:
        return
    os.rmdir(path)
