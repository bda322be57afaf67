"""scripts/slurm/rlif.sbatch under a real Slurm: two slurmd nodes on this machine, the CPU demo across both.

What the stub tests (test_slurm_script.py) cannot show: that Slurm's own srun/sbatch/scancel, Ray's real
`ray start` and verl's real main_ppo work together through the script. The fixture installs Debian's `slurm-wlm`
and `munge` when they are missing and it may (root with apt-get; otherwise the tests skip and say why), then
starts munged, slurmctld and two slurmd (node names `rlifa` and `rlifb`, both on 127.0.0.1 with their own ports,
`proctrack/linuxproc`, no cgroups), all with state, sockets and logs under a temporary directory and stopped by
PID at the end. Nothing touches the machine's own Slurm or munge configuration.

Every job uses a private Ray port and temp dir, so no `ray.init()` elsewhere on the machine can join it.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from verl_rlif.testing.cpu_demo import prepare_demo
from verl_rlif.testing.tiny_model import build_tiny_model

pytestmark = pytest.mark.slow  # minutes of both cores; `make test` (CI) still runs it

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm" / "rlif.sbatch"
NODES = ("rlifa", "rlifb")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _install_problem() -> str | None:
    """Why Slurm cannot be had here, or None once its commands are on PATH."""
    if all(shutil.which(name) or os.path.exists(f"/usr/sbin/{name}") for name in DAEMONS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed, and installing them needs root with apt-get"
    for command in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"],):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:  # a fresh machine may need the package lists first
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
            done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"apt-get could not install slurm-wlm and munge: {done.stderr.strip()[-300:]}"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Slurm:
    """A two-node Slurm on this machine; every daemon a child of this process, stopped by PID."""

    def __init__(self, base: Path):
        self.base = base
        self.daemons: list[subprocess.Popen] = []
        self.conf = base / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> None:
        base = self.base
        key = base / "munge.key"
        subprocess.run([_sbin("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o600)
        socket_path = base / "munge.socket"
        self._spawn(
            [_sbin("munged"), "--foreground", "--force", f"--socket={socket_path}", f"--key-file={key}",
             f"--pid-file={base}/munged.pid", f"--log-file={base}/munged.log", f"--seed-file={base}/munged.seed"],
        )  # fmt: skip
        for _ in range(100):
            if socket_path.exists():
                break
            time.sleep(0.1)
        host = socket.gethostname()
        ports = {node: _free_port() for node in NODES}
        lines = [
            "ClusterName=rlif-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={socket_path}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={base}/ctld",
            f"SlurmdSpoolDir={base}/spool-%n",
            f"SlurmctldPidFile={base}/slurmctld.pid",
            f"SlurmdPidFile={base}/slurmd-%n.pid",
            f"SlurmctldLogFile={base}/slurmctld.log",
            f"SlurmdLogFile={base}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "ReturnToService=2",
            "KillWait=10",
            "MinJobAge=60",
            "SlurmdTimeout=60",
            "MailProg=/bin/true",
            "SlurmdParameters=config_overrides",  # 8 CPUs declared on a smaller machine: Ray needs 3 per slot
            # two nodes on one host: distinct names, host names and ports (environment.md)
            f"NodeName={NODES[0]} NodeHostname={host} NodeAddr=127.0.0.1 Port={ports[NODES[0]]} CPUs=8 State=UNKNOWN",
            f"NodeName={NODES[1]} NodeHostname=localhost NodeAddr=127.0.0.1 Port={ports[NODES[1]]} CPUs=8 "
            "State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (base / "ctld").mkdir()
        for node in NODES:
            (base / f"spool-{node}").mkdir()
        self._spawn([_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        for node in NODES:
            self._spawn([_sbin("slurmd"), "-D", "-N", node, "-f", str(self.conf)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = self.sinfo()
            if states and all(state.startswith("idle") for state in states.values()) and len(states) == 2:
                return
            time.sleep(1)
        raise RuntimeError(f"the test Slurm did not come up: sinfo says {self.sinfo()}; logs in {base}")

    def _spawn(self, command: list[str]) -> None:
        log = open(self.base / f"{Path(command[0]).name}-{len(self.daemons)}.out", "wb")  # noqa: SIM115
        self.daemons.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def sinfo(self) -> dict[str, str]:
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env, capture_output=True, text=True)
        return dict(line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)

    def stop(self) -> None:
        for proc in reversed(self.daemons):  # slurmd, slurmctld, then munged: by PID, never by name
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.daemons):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # slurmstepd detaches from slurmd and may outlive it: end those of this cluster (its SLURM_CONF), by PID
        for pid in _pids_with(f"SLURM_CONF={self.conf}"):
            if pid != os.getpid():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def sbatch(self, env: dict, *args: str) -> str:
        done = subprocess.run(
            ["sbatch", "--parsable", *args], env={**self.env, **env}, capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def state(self, job: str) -> str:
        done = subprocess.run(
            ["scontrol", "show", "job", job, "-o"], env=self.env, capture_output=True, text=True, timeout=30
        )
        fields = dict(item.split("=", 1) for item in done.stdout.split() if "=" in item)
        return fields.get("JobState", "GONE")

    def wait(self, job: str, timeout_s: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "GONE")) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state(job)
            if state in until:
                return state
            time.sleep(2)
        return self.state(job)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    problem = _install_problem()
    if problem:
        pytest.skip(problem)
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The CPU demo's run on a tiny offline model: the Hydra overrides after the config name."""
    base = tmp_path_factory.mktemp("demo")
    model = build_tiny_model(str(base / "model"))
    run = prepare_demo(2, str(base / "run"), model_path=model)
    overrides = run.command()[7:]  # after `python -m verl.trainer.main_ppo --config-path P --config-name rlif`
    small = [
        "data.train_batch_size=4",
        "data.max_response_length=16",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "rlif.extractor.default=boxed",
        "trainer.save_freq=-1",
    ]
    return run, [*overrides, *small]


@pytest.fixture
def ray_tmp():
    """The job's Ray temp dir: short, since Ray's socket paths below it must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rlif-ray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def job_env(tmp: Path, ray_tmp: Path, run, **extra) -> dict:
    """What the user exports before `sbatch` (scripts/README.md): the RLIF_* settings and the CPU platform."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),  # this checkout's verl_rlif, as an editable install would give
        "RLIF_CONFIG": "rlif",
        "RLIF_PYTHON": sys.executable,
        "RLIF_RAY": str(Path(venv_bin) / "ray"),
        "RLIF_GPUS_PER_NODE": "1",  # the CPU platform's logical training slot per node
        "RLIF_RAY_PORT": str(_free_port()),  # never Ray's default 6379: other Ray users share this machine
        "RLIF_RAY_TMPDIR": str(ray_tmp),
        "RLIF_LOG_DIR": str(tmp / "logs"),
        "RLIF_POLL_S": "2",
        "RLIF_JOIN_TIMEOUT_S": "180",
        "VERL_USE_EXTERNAL_MODULES": "verl_rlif.testing.register",
        "VERL_PLATFORM": "rlif_cpu",
        "VERL_FILE_LOGGER_PATH": run.metrics_path,
        "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": "0.05",  # two Ray nodes on one small machine
        **extra,
    }


def submit(slurm, tmp: Path, ray_tmp: Path, run, overrides, **extra) -> tuple[str, Path]:
    out = tmp / "job.out"
    job = slurm.sbatch(
        job_env(tmp, ray_tmp, run, **extra),
        "--nodes=2",
        "--gpus-per-node=0",  # this cluster has no gpu GRES: the documented override of the script's default
        f"--output={out}",
        str(SCRIPT),
        *overrides,
    )
    return job, out


def _pids_with(variable: str) -> list[int]:
    """Processes on this machine whose environment holds VARIABLE (``NAME=value``)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if variable.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def processes_of(job: str) -> list[str]:
    """Processes started for the job (Slurm sets SLURM_JOB_ID in their environment), with their command lines."""
    found = []
    for pid in _pids_with(f"SLURM_JOB_ID={job}"):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            found.append(f"{pid} {command.decode(errors='replace')}")
    return found


def no_processes_left(job: str, within_s: float = 60) -> list[str]:
    deadline = time.monotonic() + within_s
    while (left := processes_of(job)) and time.monotonic() < deadline:
        time.sleep(2)
    return left


def test_the_cpu_demo_trains_two_steps_across_two_slurm_nodes(slurm, demo, tmp_path, ray_tmp):
    run, overrides = demo
    before = os.path.exists("/tmp/ray/ray_current_cluster") and os.stat("/tmp/ray/ray_current_cluster").st_mtime
    job, out = submit(slurm, tmp_path, ray_tmp, run, overrides)
    state = slurm.wait(job, timeout_s=900)
    log = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", f"{state}\n{log[-4000:]}"
    assert "all 2 node(s) joined the Ray cluster" in log and "main_ppo exited with status 0" in log
    assert "verl-rlif check: rlif is valid" in log  # the config check ran first
    metrics = [line for line in Path(run.metrics_path).read_text().splitlines() if line.strip()]
    assert len(metrics) >= 2, log[-4000:]  # verl's JSONL: one line per training step
    assert not no_processes_left(job)
    after = os.path.exists("/tmp/ray/ray_current_cluster") and os.stat("/tmp/ray/ray_current_cluster").st_mtime
    assert before == after  # the job's Ray never advertised itself to plain ray.init() calls on this machine


def test_a_node_without_the_plugin_stops_the_job_naming_it_and_why(slurm, demo, tmp_path, ray_tmp):
    run, overrides = demo
    setup = tmp_path / "site.sh"  # on rlifb only, verl cannot find the plugin
    setup.write_text('if [[ "${SLURMD_NODENAME:-}" == rlifb ]]; then export VERL_USE_EXTERNAL_PLUGINS=none; '
                     "unset VERL_USE_EXTERNAL_MODULES; fi\n")  # fmt: skip
    job, out = submit(slurm, tmp_path, ray_tmp, run, overrides, RLIF_SETUP=str(setup))
    state = slurm.wait(job, timeout_s=400)
    log = out.read_text()
    assert state == "FAILED", log[-3000:]
    assert "node(s) rlifb cannot import the verl-rlif plugin" in log
    assert "node rlifb: verl-rlif plugin FAILED" in log and "Exited with exit code" not in log.split("ERROR")[-1]
    assert "node rlifa:" not in log and "launching main_ppo" not in log
    assert not no_processes_left(job)


def test_a_busy_port_stops_the_job_at_once_naming_it(slurm, demo, tmp_path, ray_tmp):
    run, overrides = demo
    with socket.socket() as holder:  # a program (not Ray) holding the head's port on every address
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        start = time.monotonic()
        job, out = submit(slurm, tmp_path, ray_tmp, run, overrides, RLIF_RAY_PORT=str(port), RLIF_POLL_TIMEOUT_S="10")
        state = slurm.wait(job, timeout_s=300)
        took = time.monotonic() - start
    log = out.read_text()
    assert state == "FAILED", log[-3000:]
    assert f"port {port} on rlifa is taken by something that is not this job's Ray" in log
    assert "no answer from a Ray head" in log and "Nothing was started" in log
    assert "starting the Ray head" not in log
    assert took < 200  # not Slurm's time limit
    assert not no_processes_left(job)


def test_scancel_mid_run_leaves_no_process_behind(slurm, demo, tmp_path, ray_tmp):
    run, overrides = demo
    job, out = submit(slurm, tmp_path, ray_tmp, run, overrides)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and "launching main_ppo" not in (out.read_text() if out.exists() else ""):
        time.sleep(2)
    assert "launching main_ppo" in out.read_text(), out.read_text()[-3000:]
    time.sleep(15)  # main_ppo and Ray's workers are up
    assert processes_of(job)
    subprocess.run(["scancel", job], env=slurm.env, check=True, timeout=30)
    assert slurm.wait(job, timeout_s=120) in ("CANCELLED", "GONE")
    assert not no_processes_left(job, within_s=90), processes_of(job)
