"""scripts/slurm/rlif.sbatch against stub ``scontrol``/``srun``/``hostname``/``ray``/``python`` executables.

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

STUBS = {
    "scontrol": """
echo "scontrol $*" >> "$STUB_LOG"
[[ "$1 $2" == "show hostnames" ]] && printf '%s\\n' $STUB_NODES
""",
    # srun [flags] -w NODE CMD...: log, then run CMD "on" NODE (STUB_NODE tells the other stubs where they are)
    "srun": """
node=""; args=()
while (( $# )); do
    case "$1" in
        -w) node="$2"; shift 2 ;;
        --*) args+=("$1"); shift ;;
        *) break ;;
    esac
done
echo "srun ${args[*]} -w $node :: $*" >> "$STUB_LOG"
export STUB_NODE="$node"
exec "$@"
""",
    "hostname": """echo "10.0.0.1 fe80::1" """,
    "ray": """
echo "ray $* @${STUB_NODE}" >> "$STUB_LOG"
[[ " $STUB_RAY_FAIL " == *" $STUB_NODE "* ]] && { echo "ray: cannot reach the head" >&2; exit 1; }
echo $$ >> "$STUB_PIDS"
exec sleep 300
""",
    "python": """
echo "python $* @${STUB_NODE:-batch} RAY_ADDRESS=${RAY_ADDRESS:-}" >> "$STUB_LOG"
case "$2 $3" in
    "verl_rlif.cli check") exit "${STUB_CHECK_RC:-0}" ;;
    "verl_rlif.cli ray-nodes") printf '%s\\n' ${STUB_ALIVE-$STUB_NODES} | sed 's/$/.cluster.local/' ;;
    "verl_rlif.cli node-check")
        if [[ " $STUB_BAD_NODES " == *" $STUB_NODE "* ]]; then
            echo "verl-rlif plugin FAILED on $STUB_NODE: cannot import verl: ModuleNotFoundError: no 'verl'"
            exit 1
        fi
        echo "verl-rlif plugin OK on $STUB_NODE" ;;
    "verl.trainer.main_ppo "*) exit "${STUB_MAIN_RC:-0}" ;;
    *) echo "unexpected python call: $*" >&2; exit 99 ;;
esac
""",
}


@pytest.fixture
def cluster(tmp_path):
    """Runs the script with the stubs first on PATH; yields run(overrides, **env) -> (completed, log lines)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text("#!/usr/bin/env bash\n" + body)
        stub.chmod(0o755)
    log, pids = tmp_path / "calls.log", tmp_path / "ray.pids"

    def run(*overrides, **env):
        log.write_text("")
        environment = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
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
