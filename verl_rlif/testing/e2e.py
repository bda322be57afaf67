"""Launch verl's real ``python -m verl.trainer.main_ppo`` with verl-rlif, on the CPU or a GPU, and read its metrics.

Used by ``verl-rlif demo`` (``make demo``), the end-to-end test and its GPU variant. The run is the user's
command line with the packaged ``verl_rlif/configs/rlif.yaml`` (or ``rlif_megatron.yaml``) and the override file
``verl_rlif/configs/demo/cpu.yaml`` (``+demo=cpu``; ``+demo=cuda`` for a GPU), plus the two variables that load the
test-support package: the launching process needs them too, because verl resolves its platform there before Ray starts.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from verl_rlif.configs import CONFIG_DIR
from verl_rlif.launch import main_ppo_command

TESTING_MODULE = "verl_rlif.testing.register"
DEVICES = ("cpu", "cuda")
TIMEOUT_EXIT_CODE = 124  # what coreutils' timeout returns


def launch_env(device: str, metrics_path: str) -> dict[str, str]:
    """Environment of the launching process: the test-support package, the platform, verl's JSONL metrics file."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES=TESTING_MODULE, VERL_FILE_LOGGER_PATH=metrics_path)
    if device == "cpu":
        env["VERL_PLATFORM"] = "rlif_cpu"
        # Ray gives a worker without a CPU reservation OMP_NUM_THREADS=1 unless the variable is set: torch then
        # trains and generates on one core. The workers take turns (sync trainer), so each may use every core:
        # measured with SmolLM2 on 2 cores, old log-probs 11.3 -> 7.6 s and the update 34 -> 23 s a step.
        env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
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
    config_dir: str = CONFIG_DIR

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.output_dir, "metrics.jsonl")

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.output_dir, "checkpoints")

    @property
    def hydra_dir(self) -> str:
        return os.path.join(self.output_dir, "hydra")

    def command(self) -> list[str]:
        return main_ppo_command(
            self.config_dir,
            self.config_name,
            [
                f"+demo={self.device}",
                f"actor_rollout_ref.model.path={self.model_path}",
                f"data.train_files={self.train_file}",
                f"data.val_files={self.val_file}",
                f"trainer.total_training_steps={self.steps}",
                f"trainer.default_local_dir={self.checkpoint_dir}",
                # not Hydra's default ./outputs/<date>/<time> in the caller's directory
                f"hydra.run.dir={self.hydra_dir}",
                *self.overrides,
            ],
        )


def run_main_ppo(
    run: MainPPORun,
    log_path: str,
    on_line: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
    grace_s: float = 30.0,
) -> int:
    """Run ``main_ppo`` to completion; every output line goes to ``log_path`` and to ``on_line``. Returns the exit code,
    or ``TIMEOUT_EXIT_CODE`` when it ran past ``timeout_s``.

    The run is its own process group (Ray's local cluster and verl's workers start inside it). Past ``timeout_s`` the
    group gets SIGTERM (Ray shuts its cluster down), ``grace_s`` later SIGKILL; the same happens when ``on_line``
    raises. verl's file logger truncates its file when it opens it, so each invocation writes ``run.metrics_path``
    anew.
    """
    os.makedirs(run.output_dir, exist_ok=True)
    env = launch_env(run.device, run.metrics_path)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(run.command()) + "\n")
        proc = subprocess.Popen(
            run.command(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            _stop(proc, grace_s)  # ends the group, so the output loop below sees end-of-file

        watchdog = threading.Timer(timeout_s, on_timeout) if timeout_s else None
        if watchdog:
            watchdog.daemon = True
            watchdog.start()
        try:
            for line in proc.stdout:
                log.write(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait()
            if timed_out.is_set():
                log.write(f"verl-rlif: main_ppo stopped after the {timeout_s} s limit\n")
                return TIMEOUT_EXIT_CODE
            return code
        finally:
            if watchdog:
                watchdog.cancel()
            _stop(proc, grace_s)


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the run's process group; once its leader has exited, or ``grace_s`` later, SIGKILL to what is left."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)  # also whatever of the group outlived its leader and still holds the output
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except ProcessLookupError:
        pass  # the whole group has exited


def read_metrics(path: str) -> list[dict]:
    """verl's JSONL metrics (``trainer.logger`` includes ``file``): one ``{"step": n, **metrics}`` per step."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        complete = f.read().split("\n")[:-1]  # the last piece is empty, or a record verl is still writing
    return [{"step": record["step"], **record["data"]} for record in map(json.loads, filter(str.strip, complete))]


def finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
