"""The launcher of the end-to-end run and ``verl-rlif demo`` (verl_rlif/testing/e2e.py, cpu_demo.py), without main_ppo:
the watchdog on a stand-in child, the command line, the metrics reader, the demo's configuration. About 10 s."""

import json
import os
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from verl_rlif.cli import main
from verl_rlif.testing import cpu_demo
from verl_rlif.testing.e2e import TIMEOUT_EXIT_CODE, MainPPORun, read_metrics, run_main_ppo

# a driver that shrugs off SIGTERM, with a child of its own that does too and keeps the output pipe open
IGNORE_TERM_AND_SLEEP = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
STUBBORN = f"""
import subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", {IGNORE_TERM_AND_SLEEP!r}])
print("grandchild", grandchild.pid, flush=True)
{IGNORE_TERM_AND_SLEEP}
"""


class StandIn(MainPPORun):
    def __init__(self, output_dir: str, script: str):
        super().__init__("model", "train.parquet", "val.parquet", output_dir, steps=1)
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_watchdog_kills_the_whole_process_group_and_says_so(tmp_path):
    lines = []
    start = time.monotonic()
    code = run_main_ppo(StandIn(str(tmp_path), STUBBORN), str(tmp_path / "log"), lines.append, timeout_s=2, grace_s=1)
    elapsed = time.monotonic() - start
    assert code == TIMEOUT_EXIT_CODE
    assert elapsed < 30  # the stand-in would run 120 s: SIGTERM alone is ignored, and the grandchild holds the pipe
    grandchild = int(next(line for line in lines if line.startswith("grandchild")).split()[1])
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(grandchild)
    assert "stopped after the 2 s limit" in (tmp_path / "log").read_text()


def test_a_finished_run_returns_its_own_exit_code(tmp_path):
    run = StandIn(str(tmp_path), "import sys; print('done'); sys.exit(3)")
    assert run_main_ppo(run, str(tmp_path / "log"), timeout_s=60) == 3


def test_command_keeps_hydra_output_in_the_run_directory(tmp_path):
    run = MainPPORun("model", "train.parquet", "val.parquet", str(tmp_path), steps=2)
    command = run.command()
    assert f"hydra.run.dir={tmp_path / 'hydra'}" in command  # not ./outputs/<date>/<time> where it was started
    assert command[command.index("--config-path") + 1] == run.config_dir


def test_read_metrics_skips_a_record_still_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [json.dumps({"step": s, "data": {"actor/pg_loss": 0.5 * s}}) for s in (1, 2)]
    path.write_text(records[0] + "\n" + records[1][:20])  # verl prints 'step:' before its file logger finishes
    assert read_metrics(str(path)) == [{"step": 1, "actor/pg_loss": 0.5}]
    path.write_text(records[0] + "\n" + records[1] + "\n")
    assert [m["step"] for m in read_metrics(str(path))] == [1, 2]


def test_demo_without_the_configs_directory_fails_before_any_download(tmp_path, monkeypatch, capsys):
    def no_download(*args):
        raise AssertionError("the model was fetched before the configs were checked")

    monkeypatch.setattr(cpu_demo, "smollm2_path", no_download)
    code = main(["demo", "--config-path", str(tmp_path), "--output-dir", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "rlif.yaml") in err and "Leave out --config-path for the packaged configs" in err
    assert not (tmp_path / "run").exists()  # nothing written either


def overrides_of(run: MainPPORun) -> list[str]:
    command = run.command()
    return [arg for arg in command[command.index(run.config_name) + 1 :] if not arg.startswith("hydra.")]


@pytest.mark.parametrize("config_name, strategy", [("rlif", "fsdp2"), ("rlif_megatron", "megatron")])
def test_demo_runs_the_engine_its_config_names(tmp_path, config_name, strategy):
    """demo/cpu.yaml sets FSDP2; on rlif_megatron the demo (and the test's Megatron run) must stay Megatron."""
    run = cpu_demo.prepare_demo(2, str(tmp_path), model_path="model", config_name=config_name)
    with initialize_config_dir(config_dir=run.config_dir, version_base=None):
        config = compose(config_name=config_name, overrides=overrides_of(run))
    actor_rollout_ref = config.actor_rollout_ref
    assert (actor_rollout_ref.actor.strategy, actor_rollout_ref.ref.strategy) == (strategy, strategy)
    assert ("fsdp_config" in actor_rollout_ref.actor) == (strategy == "fsdp2")
    assert os.path.isfile(run.train_file)
