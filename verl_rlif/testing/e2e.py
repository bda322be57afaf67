"""Launch verl's real ``python -m verl.trainer.main_ppo`` with verl-rlif, on the CPU or a GPU, and read its metrics.

Used by ``verl-rlif demo`` (``make demo``), the end-to-end test and its GPU variant. The run is the user's
command line with ``configs/rlif.yaml`` (or ``rlif_megatron.yaml``) and the override file ``configs/demo/cpu.yaml``
(``+demo=cpu``; ``+demo=cuda`` for a GPU), plus the two variables that load the test-support package: the launching
process needs them too, because verl resolves its platform there before Ray starts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
TESTING_MODULE = "verl_rlif.testing.register"
DEVICES = ("cpu", "cuda")


def launch_env(device: str, metrics_path: str) -> dict[str, str]:
    """Environment of the launching process: the test-support package, the platform, verl's JSONL metrics file."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES=TESTING_MODULE, VERL_FILE_LOGGER_PATH=metrics_path)
    if device == "cpu":
        env["VERL_PLATFORM"] = "rlif_cpu"
    else:
        env.pop("VERL_PLATFORM", None)  # verl detects CUDA itself
    return env


@dataclass
class MainPPORun:
    """One ``main_ppo`` invocation: model, data, number of steps, checkpoints, and any further Hydra overrides."""

    model_path: str
    train_file: str
    val_file: str
    output_dir: str
    steps: int
    device: str = "cpu"
    config_name: str = "rlif"
    overrides: list[str] = field(default_factory=list)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.output_dir, "metrics.jsonl")

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.output_dir, "checkpoints")

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "verl.trainer.main_ppo",
            "--config-path",
            CONFIG_DIR,
            "--config-name",
            self.config_name,
            f"+demo={self.device}",
            f"actor_rollout_ref.model.path={self.model_path}",
            f"data.train_files={self.train_file}",
            f"data.val_files={self.val_file}",
            f"trainer.total_training_steps={self.steps}",
            f"trainer.default_local_dir={self.checkpoint_dir}",
            *self.overrides,
        ]


def run_main_ppo(
    run: MainPPORun, log_path: str, on_line: Callable[[str], None] | None = None, timeout_s: float | None = None
) -> int:
    """Run ``main_ppo`` to completion; every output line goes to ``log_path`` and to ``on_line``. Returns the exit code.

    Past ``timeout_s`` the run is terminated (SIGTERM lets Ray shut its local cluster down), then killed.
    verl's file logger truncates its file when it opens it, so each invocation writes ``run.metrics_path`` anew.
    """
    os.makedirs(run.output_dir, exist_ok=True)
    env = launch_env(run.device, run.metrics_path)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(run.command()) + "\n")
        proc = subprocess.Popen(
            run.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        watchdog = threading.Timer(timeout_s, proc.terminate) if timeout_s else None
        if watchdog:
            watchdog.start()
        try:
            for line in proc.stdout:
                log.write(line)
                if on_line is not None:
                    on_line(line)
            return proc.wait()
        finally:
            if watchdog:
                watchdog.cancel()
            _stop(proc)


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_metrics(path: str) -> list[dict]:
    """verl's JSONL metrics (``trainer.logger`` includes ``file``): one ``{"step": n, **metrics}`` per step."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [{"step": record["step"], **record["data"]} for record in map(json.loads, filter(str.strip, f))]


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
