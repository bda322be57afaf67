"""Output files that are whole or absent: checked before any work, written to a temporary file and renamed.

A crash, a full disk or Ctrl-C mid-write leaves the previous file (or none), never a half-written one: the data
goes to a hidden ``.NAME.*.part`` file in the same directory (same file system, so the rename is atomic), which
replaces ``NAME`` only once it is complete. A symlink is followed (its target is replaced, the link stays), and
a path that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written in place: renaming over it
would replace the device node itself, for every process on the machine.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO


def output_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as an output file, in a few words naming the fix; None when it can."""
    if os.path.isdir(path):
        return "a directory, not a file: give a file name inside it"
    parent = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(parent):
        return f"its directory {parent} does not exist: create it first"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"its directory {parent} is not writable: choose another path"
    if os.path.exists(path) and not os.access(path, os.W_OK):  # the rename could replace it: respect the mode
        return "exists and is read-only: choose another path or make it writable"
    return None


def _new_file_mode(path: str) -> int:
    """The mode the file would have had, written the ordinary way (mkstemp's is 0600): kept, or 0666 - umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _is_special(path: str) -> bool:
    """``path`` (symlinks followed) exists and is not a regular file: a device, a FIFO, a terminal."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output(path: str, binary: bool = False) -> Iterator[IO]:
    """A file object (text UTF-8, or ``binary``) whose content becomes ``path`` when the block exits cleanly."""
    encoding = {} if binary else {"encoding": "utf-8"}
    if _is_special(path):  # nothing to keep whole, and a rename would replace the node itself
        with open(path, "wb" if binary else "w", **encoding) as f:
            yield f
        return
    directory, name = os.path.split(os.path.realpath(path))
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, _new_file_mode(path))
        os.replace(partial, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
