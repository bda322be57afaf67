"""Record the system calls that ordinary solutions make under the worker (run by hand: needs ``strace``).

``python tests/sandbox/trace_syscalls.py [out.txt]`` preloads the harness as a worker does, then for each solution in
``ordinary_solutions.py`` and each of its inputs forks a child that runs it exactly as a sandboxed child does after
its setup (``harness.run``, the record written to descriptor 3, ``os._exit``), all under ``strace -f``. Only the
calls a child makes after a marker (``stat`` of a path that never exists) count: what comes before is the
worker's and the setup's, which run before the filter. Writes the sorted union of syscall names, one per line,
with a header saying how it was made; ``test_seccomp_allowlist.py`` checks the allowlist against that file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "/rlif-trace-start-marker"


def _children() -> None:  # runs under strace
    sys.path[:0] = [str(HERE), str(HERE.parents[1])]
    from ordinary_solutions import SOLUTIONS

    from verl_rlif.sandbox import harness

    harness.preload()
    for _, program, inputs, _ in SOLUTIONS:
        for stdin in inputs:
            memfd = os.memfd_create("stdin")
            os.write(memfd, stdin.encode())
            os.lseek(memfd, 0, os.SEEK_SET)
            record_r, record_w = os.pipe()
            devnull = os.open(os.devnull, os.O_WRONLY)
            pid = os.fork()
            if pid == 0:
                os.dup2(memfd, 0)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                os.dup2(record_w, 3)
                os.closerange(4, 1024)
                sys.stdin = open(0, encoding="utf-8", closefd=False)
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
                try:
                    os.stat(MARKER)
                except OSError:
                    pass
                harness.run(program, None, stdin, 6, lambda record: os.write(3, f"\n{record}\n".encode()))
                os._exit(0)
            for fd in (memfd, record_w, devnull):
                os.close(fd)
            os.waitpid(pid, 0)
            os.close(record_r)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--children":
        _children()
        return 0
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "seccomp_trace.txt"
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "trace")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        subprocess.run(["strace", "-f", "-ff", "-qq", "-o", prefix, sys.executable, __file__, "--children"],
                       check=True, env=env, cwd=tmp, timeout=600)  # fmt: skip
        names: set[str] = set()
        for path in Path(tmp).glob("trace.*"):
            lines = path.read_text(errors="replace").splitlines()
            start = next((i for i, line in enumerate(lines) if MARKER in line), None)
            if start is None:  # the parent, or a thread of a child (its calls all follow the marker)
                if any("--children" in line for line in lines[:3]):
                    continue
                start = -1
            for line in lines[start + 1 :]:
                match = re.match(r"(?:\d+ +)?([a-z0-9_]+)\(", line)
                if match:
                    names.add(match.group(1))
    header = (
        "# system calls made by tests/sandbox/ordinary_solutions.py under the worker, recorded by\n"
        f"# tests/sandbox/trace_syscalls.py (strace -f; Python {sys.version.split()[0]}, {os.uname().machine},"
        f" Linux {os.uname().release})\n"
    )
    out.write_text(header + "".join(f"{name}\n" for name in sorted(names)))
    print(f"{len(names)} system calls written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
