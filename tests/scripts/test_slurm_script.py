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


def node_of(line):
    """The node a stub call ran on (``... @gpu-02 ...``)."""
    return line.split(" @")[-1].split()[0]


def test_head_workers_join_check_then_main_ppo(cluster, tmp_path):
    done, log = cluster("preset=vote_only")
    assert done.returncode == 0, done.stderr
    # the config is checked first, for the allocation's size, before anything starts
    (check,) = calls(log, "python -m verl_rlif.cli check")
    assert "--config-name math_7b_fsdp trainer.nnodes=3 trainer.n_gpus_per_node=8 " in check
    assert "++ray_kwargs.ray_init.num_cpus=null ++ray_kwargs.ray_init.num_gpus=null preset=vote_only" in check
    assert log.index(check) < log.index(calls(log, "ray start")[0])
    # one head on the first node, a worker on each other node, all through srun on that node
    starts = calls(log, "ray start")
    assert starts[0].startswith(
        "ray start --head --node-ip-address=10.0.0.1 --port=6379 --num-gpus 8 --temp-dir /tmp/rlif-ray-4242 "
        '--resources {"rlif_4242_gpu-01": 1} --block'
    )
    assert node_of(starts[0]) == "gpu-01"
    assert sorted(node_of(s) for s in starts[1:]) == ["gpu-02", "gpu-03"]
    for start in starts[1:]:  # each node carries this job's resource under its own name
        assert f'--temp-dir /tmp/rlif-ray-4242 --resources {{"rlif_4242_{node_of(start)}": 1}}' in start
    # every question to Ray is bounded and counts this job's nodes only
    polls = calls(log, "python -m verl_rlif.cli ray-nodes")
    assert all("10.0.0.1:6379 --timeout-s 30 --job-resource rlif_4242_" in poll for poll in polls)
    assert log.index(polls[0]) < log.index(starts[0])  # the port is checked before the head starts
    assert all("--address=10.0.0.1:6379" in s for s in starts[1:])
    assert all("--overlap --nodes=1 --ntasks=1" in line for line in calls(log, "srun"))
    # every node imports the plugin, then main_ppo runs once on the batch host against the running cluster
    plugin_checks = calls(log, "python -m verl_rlif.cli node-check")
    assert sorted(node_of(c) for c in plugin_checks) == NODES
    (main_ppo,) = calls(log, "python -m verl.trainer.main_ppo")
    assert "@batch RAY_ADDRESS=10.0.0.1:6379" in main_ppo
    assert "--config-path pkg://verl_rlif.configs --config-name math_7b_fsdp trainer.nnodes=3 " in main_ppo
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
    assert "ray start exited on gpu-03 before the cluster formed: ray: cannot reach the head" in done.stderr
    assert "ray-gpu-03.log" in done.stderr


def test_a_config_that_fails_the_check_starts_nothing(cluster):
    done, log = cluster(STUB_CHECK_RC="1")
    assert done.returncode == 1 and "failed 'verl-rlif check'" in done.stderr
    assert not calls(log, "ray") and not calls(log, "srun")


def site_commands(tmp_path):
    """The stub python and ray under other names at a site path, so a hard-coded `python`/`ray` would show."""
    site = tmp_path / "x" / "envs" / "bin"
    site.mkdir(parents=True)
    (site / "python3.11").symlink_to(STUBS / "python")
    (site / "ray-2.40").symlink_to(STUBS / "ray")
    return str(site / "python3.11"), str(site / "ray-2.40")


def test_every_site_value_comes_from_the_environment(cluster, tmp_path):
    setup = tmp_path / "site.sh"
    setup.write_text('echo "site setup ${STUB_NODE:-batch}" >> "$STUB_LOG"\n')
    python, ray = site_commands(tmp_path)
    done, log = cluster(
        RLIF_PYTHON=python,
        RLIF_RAY=ray,
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
    assert "--node-ip-address=192.168.0.7 --port=6380 --num-gpus 4 --temp-dir /scratch/ray --num-cpus 96" in head
    assert all("--overlap --mpi=none" in line for line in calls(log, "srun"))
    # Ray's steps get the node's CPUs (srun no longer inherits sbatch's --cpus-per-task); other steps do not
    ray_steps = [line for line in calls(log, "srun") if f" {ray} start " in line]
    assert len(ray_steps) == 3 and all("--cpus-per-task=96" in line for line in ray_steps)
    assert not any("--cpus-per-task" in line for line in calls(log, "srun") if line not in ray_steps)
    (main_ppo,) = calls(log, "python -m verl.trainer.main_ppo")
    assert "--config-path /shared/verl-rlif/configs --config-name math_32b_megatron" in main_ppo
    assert "trainer.n_gpus_per_node=4" in main_ppo and "RAY_ADDRESS=192.168.0.7:6380" in main_ppo
    # every python and ray call went through the configured paths, none through a bare `python`/`ray`
    assert all(line.endswith(f"via={python}") for line in calls(log, "python"))
    assert len(calls(log, "python -m verl_rlif.cli ray-nodes")) >= 2 and len(calls(log, "python")) >= 6
    assert all(line.endswith(f"via={ray}") for line in calls(log, "ray start")) and len(calls(log, "ray")) == 3
    assert "site setup batch" in log and all(f"site setup {node}" in log for node in NODES)
    assert not any("hostname --ip-address" in line for line in calls(log, "srun"))  # RLIF_HEAD_IP given: no lookup


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


def test_a_failed_dry_run_keeps_the_logs_its_error_points_to(tmp_path):
    import re
    import sys

    done = subprocess.run(
        [str(SCRIPT.parent / "dry-run.sh")],
        cwd=SCRIPT.parents[2],
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "STUB_RAY_FAIL": "node-2",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "ray start exited on node-2" in done.stderr
    log = re.search(r"all of it in (\S+/ray-node-2\.log)", done.stderr).group(1)
    assert "ray: cannot reach the head" in Path(log).read_text()  # still there after the script exited


def test_cpus_per_task_defaults_to_the_allocations(cluster):
    done, log = cluster(SLURM_CPUS_ON_NODE="64")
    assert done.returncode == 0, done.stderr
    ray_steps = [line for line in calls(log, "srun") if ":: ray start" in line]
    assert len(ray_steps) == 3 and all("--cpus-per-task=64" in line for line in ray_steps)
    assert all("--num-cpus 64" in line for line in calls(log, "ray start"))


def test_setup_file_is_sourced_in_the_batch_shell_too(cluster, tmp_path):
    """A site whose setup is what puts python on PATH: the check, the join wait and main_ppo need it here too."""
    bare = tmp_path / "bare"  # the stubs without python
    bare.mkdir()
    for stub in STUBS.iterdir():
        if stub.name != "python":
            (bare / stub.name).symlink_to(stub)
    env_bin = tmp_path / "env" / "bin"
    env_bin.mkdir(parents=True)
    (env_bin / "python").symlink_to(STUBS / "python")
    setup = tmp_path / "site.sh"
    # like module/conda scripts, it also reads a variable that is not set (the script runs with set -u)
    setup.write_text(f'export PATH="{env_bin}:$PATH"\nunset_reader="$NOT_SET_ANYWHERE"\n')
    done, log = cluster(PATH=f"{bare}:/usr/bin:/bin", RLIF_SETUP=str(setup))
    assert done.returncode == 0, done.stderr
    assert "command not found" not in done.stderr
    assert calls(log, "python -m verl_rlif.cli check") and calls(log, "python -m verl.trainer.main_ppo")


def test_a_loopback_head_address_falls_back_to_hostname_i(cluster):
    done, log = cluster(STUB_IP_ADDRESS="127.0.1.1")  # Debian's /etc/hosts entry for the own name
    assert done.returncode == 0, done.stderr
    assert calls(log, "ray start --head --node-ip-address=10.0.0.1 ")
    assert any(":: hostname -I" in line for line in calls(log, "srun"))
    done, log = cluster(STUB_IP_ADDRESS="127.0.1.1", STUB_ALL_IPS="127.0.0.1")
    assert done.returncode == 1 and "set RLIF_HEAD_IP" in done.stderr and "127.0.0.1" in done.stderr
    assert not calls(log, "ray")


def test_a_ray_cluster_already_on_the_port_is_refused_before_anything_starts(cluster):
    done, log = cluster(STUB_PORT_FOREIGN="login-3")
    assert done.returncode == 1
    assert "a Ray cluster is already running at 10.0.0.1:6379 (nodes: foreign login-3); refusing" in done.stderr
    assert "set RLIF_RAY_PORT" in done.stderr and not calls(log, "ray start")


def test_a_port_held_by_another_program_is_refused_naming_why(cluster):
    done, log = cluster(STUB_PORT_SILENT="1")
    assert done.returncode == 1
    assert "port 6379 on gpu-01 is taken by something that is not this job's Ray" in done.stderr
    assert "no answer from a Ray head at 10.0.0.1:6379 within 30s" in done.stderr and not calls(log, "ray start")


def test_a_foreign_node_in_the_cluster_stops_the_wait(cluster):
    done, log = cluster(STUB_FOREIGN_LATER="ws-7", RLIF_JOIN_TIMEOUT_S="600")
    assert done.returncode == 1 and "another Ray cluster answers at 10.0.0.1:6379" in done.stderr
    assert "foreign ws-7" in done.stderr and not calls(log, "python -m verl.trainer")


def test_too_few_cpus_for_verls_bundles_stop_before_anything_starts(cluster):
    done, log = cluster(RLIF_CPUS_PER_NODE="16")  # 8 GPUs x 3 CPUs each
    assert done.returncode == 1 and "verl asks 3 CPUs per GPU" in done.stderr
    assert not calls(log, "srun") and not calls(log, "python")


def test_every_process_gets_the_same_ray_auth(cluster, tmp_path):
    probe = tmp_path / "probe.sh"  # the setup file runs in every job step: it records the auth the step inherits
    probe.write_text(
        '[[ -z "${STUB_NODE:-}" ]] || echo "auth $STUB_NODE $RAY_AUTH_MODE ${#RAY_AUTH_TOKEN}" >> "$STUB_LOG"\n'
    )
    done, log = cluster(RLIF_SETUP=str(probe))
    assert done.returncode == 0, done.stderr
    seen = {tuple(line.split()[2:]) for line in log if line.startswith("auth ")}
    assert seen == {("token", "64")} and len([line for line in log if line.startswith("auth ")]) >= 4
    done, log = cluster(RLIF_SETUP=str(probe), RLIF_RAY_AUTH="disabled")
    assert {tuple(line.split()[2:]) for line in log if line.startswith("auth ")} == {("disabled", "0")}


def test_a_failing_ray_query_is_quoted_not_mistaken_for_missing_nodes(cluster, tmp_path):
    done, _ = cluster(STUB_RAY_NODES_FAIL="cannot reach GCS at 10.0.0.1:6379", RLIF_JOIN_TIMEOUT_S="1")
    assert done.returncode == 1 and "never joined: gpu-01." in done.stderr
    assert "Asking Ray for its nodes failed: ConnectionError: cannot reach GCS at 10.0.0.1:6379" in done.stderr
    assert "Traceback" in (tmp_path / "logs" / "ray-nodes.log").read_text()
