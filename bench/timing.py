"""Shared by the bench/ scripts: median wall time and a description of the machine the figures came from."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# The verl parity references live with the tests; benchmarks time the very same calls.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def device_from_args(description: str) -> torch.device:
    """``--device cpu|cuda`` (default cpu): where a benchmark puts its tensors."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    return torch.device(parser.parse_args().device)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn``; CUDA work is waited for, so GPU timings include the kernels."""

    def run():
        fn()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    host = f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"
    return f"{torch.cuda.get_device_name()}; {host}" if torch.cuda.is_initialized() else host
