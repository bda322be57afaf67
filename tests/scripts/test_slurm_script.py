"""scripts/slurm/rlif.sbatch against the stub ``scontrol``/``srun``/``hostname``/``ray``/``python`` in
scripts/slurm/stubs (also used by scripts/slurm/dry-run.sh).

No cluster: the stubs log every call (with the node ``srun -w`` put it on) to one file and behave as the test
asks through ``STUB_*`` variables. ``ray start --block`` becomes a long sleep that records its pid, so the tests
also prove the script ends every step it started.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "rlif.sbatch"
NODES = ["gpu-01", "gpu-02", "gpu-03"]

STUBS = SCRIPT.parent / "stubs"  # shipped for dry runs (scripts/slurm/dry-run.sh); their knobs are STUB_*


@pytest.fixture
def cluster(tmp_path):
    """Runs the script with the stubs first on PATH; yields run(overrides, **env) -> (completed, log lines)."""
    log, pids = tmp_path / "calls.log", tmp_path / "ray.pids"

    def run(*overrides, **env):
        log.write_text("")
        environment = {
            "PATH": f"{STUBS}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SLURM_JOB_NODELIST": "gpu-[01-03]",
            "SLURM_JOB_ID": "4242",
            "STUB_NODES": " ".join(NODES),
            "STUB_LOG": str(log),
            "STUB_PIDS": str(pids),
            "RLIF_LOG_DIR": str(tmp_path / "logs"),
            "RLIF_POLL_S": "0.1",
            "RLIF_JOIN_TIMEOUT_S": "30",
            **env,
        }
        done = subprocess.run(
            ["bash", str(SCRIPT), *overrides], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
        )
        return done, log.read_text().splitlines()

    yield run
    leftovers = [int(p) for p in pids.read_text().split()] if pids.exists() else []
    alive = [pid for pid in leftovers if _alive(pid)]
    for pid in alive:  # only processes this test's stubs started, by pid
        os.kill(pid, 9)
    assert not alive, f"the script left its Ray steps running: {alive}"


def _alive(pid: int) -> bool:
    for _ in range(50):  # a killed step may take a moment to go
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def calls(log, prefix):
    return [line for line in log if line.startswith(prefix)]


def test_head_workers_join_check_then_main_ppo(cluster, tmp_path):
    done, log = cluster("preset=vote_only")
    assert done.returncode == 0, done.stderr
    # the config is checked first, for the allocation's size, before anything starts
    (check,) = calls(log, "python -m verl_rlif.cli check")
    assert "--config-name math_7b_fsdp trainer.nnodes=3 trainer.n_gpus_per_node=8 preset=vote_only" in check
    assert log.index(check) < log.index(calls(log, "ray start")[0])
    # one head on the first node, a worker on each other node, all through srun on that node
    starts = calls(log, "ray start")
    assert starts[0].startswith("ray start --head --node-ip-address=10.0.0.1 --port=6379 --num-gpus 8 --block")
    assert starts[0].endswith("@gpu-01")
    assert sorted(s.split("@")[-1] for s in starts[1:]) == ["gpu-02", "gpu-03"]
    assert all("--address=10.0.0.1:6379" in s for s in starts[1:])
    assert all("--overlap --nodes=1 --ntasks=1" in line for line in calls(log, "srun"))
    # every node imports the plugin, then main_ppo runs once on the batch host against the running cluster
    plugin_checks = calls(log, "python -m verl_rlif.cli node-check")
    assert sorted(c.split("@")[-1].split()[0] for c in plugin_checks) == NODES
    (main_ppo,) = calls(log, "python -m verl.trainer.main_ppo")
    assert "@batch RAY_ADDRESS=10.0.0.1:6379" in main_ppo
    assert f"--config-path {tmp_path}/configs --config-name math_7b_fsdp trainer.nnodes=3 " in main_ppo
    assert main_ppo.split(" @")[0].endswith("preset=vote_only")
    assert max(log.index(c) for c in plugin_checks) < log.index(main_ppo)
    assert "all 3 node(s) joined the Ray cluster at 10.0.0.1:6379" in done.stdout


def test_a_node_without_the_plugin_stops_the_job_naming_it(cluster):
    done, log = cluster(STUB_BAD_NODES="gpu-02")
    assert done.returncode == 1
    assert "node(s) gpu-02 cannot import the verl-rlif plugin" in done.stderr
    assert "node gpu-02: verl-rlif plugin FAILED on gpu-02: cannot import verl" in done.stderr
    assert "node gpu-01" not in done.stderr and "node gpu-03" not in done.stderr
    assert not calls(log, "python -m verl.trainer.main_ppo")


def test_a_node_that_never_joins_times_out_naming_it(cluster):
    done, log = cluster(STUB_ALIVE="gpu-01 gpu-03", RLIF_JOIN_TIMEOUT_S="1")
    assert done.returncode == 1
    assert "after 1s, 2 of 3 node(s) joined the Ray cluster at 10.0.0.1:6379; never joined: gpu-02" in done.stderr
    assert "raise RLIF_JOIN_TIMEOUT_S" in done.stderr
    assert not calls(log, "python -m verl_rlif.cli node-check") and not calls(log, "python -m verl.trainer")


def test_a_ray_start_that_dies_stops_the_wait_at_once(cluster):
    done, log = cluster(STUB_RAY_FAIL="gpu-03", STUB_ALIVE="gpu-01 gpu-02", RLIF_JOIN_TIMEOUT_S="600")
    assert done.returncode == 1
    assert "ray start exited on gpu-03 before the cluster formed" in done.stderr and "ray-gpu-03.log" in done.stderr


def test_a_config_that_fails_the_check_starts_nothing(cluster):
    done, log = cluster(STUB_CHECK_RC="1")
    assert done.returncode == 1 and "failed 'verl-rlif check'" in done.stderr
    assert not calls(log, "ray") and not calls(log, "srun")


def test_every_site_value_comes_from_the_environment(cluster, tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text("export SITE_SOURCED=1\n")
    done, log = cluster(
        RLIF_CONFIG="math_32b_megatron",
        RLIF_CONFIG_PATH="/shared/verl-rlif/configs",
        RLIF_GPUS_PER_NODE="4",
        RLIF_CPUS_PER_NODE="96",
        RLIF_RAY_PORT="6380",
        RLIF_HEAD_IP="192.168.0.7",
        RLIF_RAY_TMPDIR="/scratch/ray",
        RLIF_SRUN_FLAGS="--overlap --mpi=none",
        RLIF_SETUP=str(setup),
    )
    assert done.returncode == 0, done.stderr
    head = calls(log, "ray start --head")[0]
    assert "--node-ip-address=192.168.0.7 --port=6380 --num-gpus 4 --num-cpus 96 --temp-dir /scratch/ray" in head
    assert all("--overlap --mpi=none" in line for line in calls(log, "srun"))
    (main_ppo,) = calls(log, "python -m verl.trainer.main_ppo")
    assert "--config-path /shared/verl-rlif/configs --config-name math_32b_megatron" in main_ppo
    assert "trainer.n_gpus_per_node=4" in main_ppo and "RAY_ADDRESS=192.168.0.7:6380" in main_ppo
    assert not calls(log, "hostname")  # RLIF_HEAD_IP given: no lookup


def test_main_ppos_exit_status_is_the_jobs(cluster):
    done, _ = cluster(STUB_MAIN_RC="3")
    assert done.returncode == 3 and "main_ppo exited with status 3" in done.stdout


def test_outside_an_allocation_it_says_so(cluster):
    done, log = cluster(SLURM_JOB_NODELIST="")
    assert done.returncode != 0 and "not inside a SLURM allocation" in done.stderr and not log


def test_setup_file_is_sourced_on_each_node_before_its_command(cluster, tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text('echo "sourced on $STUB_NODE" >> "$STUB_LOG"\n')
    done, log = cluster(RLIF_SETUP=str(setup))
    assert done.returncode == 0, done.stderr
    for node in NODES:  # once per job step on that node (the head also looks up its address)
        steps = [line for line in calls(log, "srun") if f"-w {node} ::" in line]
        assert log.count(f"sourced on {node}") == len(steps) >= 2
    assert all(f"(after source {setup})" in line for line in calls(log, "srun"))


def test_the_shipped_dry_run_runs_the_real_config_check(tmp_path):
    """scripts/slurm/dry-run.sh as a user runs it: real `verl-rlif check`, simulated cluster."""
    import sys

    done = subprocess.run(
        [str(SCRIPT.parent / "dry-run.sh"), "preset=entropy_only"],
        cwd=SCRIPT.parents[2],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "RLIF_DRY_NODES": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "verl-rlif check: math_7b_fsdp is valid" in done.stdout  # the real check ran
    assert "ray start --head --node-ip-address=10.0.0.1" in done.stdout and "@node-2" in done.stdout
    assert "would run: python -m verl.trainer.main_ppo" in done.stdout and "preset=entropy_only" in done.stdout
    bad = subprocess.run(
        [str(SCRIPT.parent / "dry-run.sh"), "actor_rollout_ref.rollout.n=1"],
        cwd=SCRIPT.parents[2],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "actor_rollout_ref.rollout.n>=2" in bad.stderr and "ray start" not in bad.stdout
