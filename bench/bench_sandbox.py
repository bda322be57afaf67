"""Programs per second through the code sandbox, against a per-program ``multiprocessing.Process`` runner.

Baseline (timed in the same run, same parallelism): the pattern of verl's ``prime_code`` (``check_correctness``):
per program a ``multiprocessing.Manager`` list and a ``Process`` that runs the program in-process (stdin/stdout
replaced by buffers), ``join(timeout + 1)``, kill if alive; the Manager is shut down each time. It has no
isolation at all. Ours: ``verl_rlif.sandbox.local.LocalExecutor`` with its default settings (every layer this
machine allows, fail-closed: default-deny seccomp, Landlock, capabilities dropped, a template process per worker,
bounded writes, namespaces where bubblewrap works), ``workers`` = cores. Two workloads: trivial programs
(``print(i)``, the sandbox's own cost) and typical solutions (parse a few thousand numbers, sort / DP / count,
print), one input each. Every program text is distinct, so nothing comes from the result cache. Run by hand:
``python bench/bench_sandbox.py``; it prints the load average (the development machine is shared).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from timing import machine

from verl_rlif.config import SandboxConfig
from verl_rlif.sandbox.local import LocalExecutor

TIMEOUT_S = 3.0
TYPICAL = [
    "n = int(input())\nxs = list(map(int, input().split()))\nxs.sort()\n"
    "print(sum(xs[i] * i for i in range(n)) % 1000003)",
    "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\nbest = cur = 0\n"
    "for x in map(int, data[1:n + 1]):\n    cur = max(x, cur + x)\n    best = max(best, cur)\nprint(best)",
    "from collections import Counter\ninput()\nc = Counter(input().split())\nprint(*sorted(c.items())[:5])",
    "n = int(input())\nxs = list(map(int, input().split()))\ndp = [1] * n\nfor i in range(n):\n"
    "    for j in range(max(0, i - 40), i):\n        if xs[j] < xs[i]:\n            dp[i] = max(dp[i], dp[j] + 1)\n"
    "print(max(dp))",
]


def typical_input(rng: random.Random, n: int = 3000) -> str:
    return f"{n}\n{' '.join(str(rng.randint(-1000, 1000)) for _ in range(n))}\n"


def _baseline_child(program: str, stdin: str, result) -> None:
    sys.stdin, sys.stdout = io.StringIO(stdin), io.StringIO()
    try:
        exec(compile(program, "<program>", "exec"), {"__name__": "__main__"})
        result.append(sys.stdout.getvalue())
    except BaseException as error:
        result.append(f"EXC:{type(error).__name__}")


def baseline_run(program: str, stdin: str) -> str:
    manager = multiprocessing.Manager()
    try:
        result = manager.list()
        process = multiprocessing.Process(target=_baseline_child, args=(program, stdin, result))
        process.start()
        process.join(timeout=TIMEOUT_S + 1)
        if process.is_alive():
            process.kill()
            process.join()
        return result[0] if result else "TIMEOUT"
    finally:
        manager.shutdown()


def rate(run, jobs, parallelism: int) -> tuple[float, list]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    return len(jobs) / (time.perf_counter() - start), results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trivial", type=int, default=600, help="trivial programs per round (default 600)")
    parser.add_argument("--typical", type=int, default=120, help="typical solutions per round (default 120)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--no-namespaces", action="store_true", help="without bubblewrap (as where it is missing)")
    args = parser.parse_args()

    settings = SandboxConfig(workers=args.workers, timeout_per_input_s=TIMEOUT_S, use_namespaces=not args.no_namespaces)
    executor = LocalExecutor(settings)
    started = time.perf_counter()
    executor.start()
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f} (other jobs share the cores)")
    print(f"sandbox start-up: {time.perf_counter() - started:.2f} s for {args.workers} workers")
    print(f"layers: {executor.describe()}\n")
    rng = random.Random(0)
    rates: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        workloads = {
            "trivial": [(f"print({round_ * 100000 + i})", "") for i in range(args.trivial)],
            "typical": [
                (TYPICAL[i % len(TYPICAL)] + f"\n# {round_}-{i}", typical_input(rng)) for i in range(args.typical)
            ],
        }
        for name, jobs in workloads.items():
            ours, ours_out = rate(lambda p, s: executor.run(p, [s])[0], jobs, args.workers)
            base, base_out = rate(baseline_run, jobs, args.workers)
            agree = sum(o == "OUT:" + b.rstrip("\n") for o, b in zip(ours_out, base_out, strict=True))
            assert agree == len(jobs), f"{name}: only {agree}/{len(jobs)} outputs agree with the baseline"
            rates.setdefault(f"{name}/ours", []).append(ours)
            rates.setdefault(f"{name}/baseline", []).append(base)
    executor.close()

    print(f"{'workload':<10} {'baseline (Process+Manager)':>28} {'ours (all layers)':>19} {'ratio':>7}")
    for name in ("trivial", "typical"):
        ours, base = statistics.median(rates[f"{name}/ours"]), statistics.median(rates[f"{name}/baseline"])
        print(f"{name:<10} {base:>22.0f} prog/s {ours:>13.0f} prog/s {ours / base:>6.2f}x")
    print(f"\nmedian of {args.rounds} rounds; load average at end {os.getloadavg()[0]:.1f}; all rates: {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
