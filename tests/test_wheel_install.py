"""The wheel as a pip user gets it: built from the sdist (as ``python -m build`` does), installed into a fresh
virtual environment with no source tree on the path, and run from an empty directory.

The fresh environment reuses this environment's installed dependencies (verl, torch, ...) through a ``.pth`` line
naming their site-packages directory: a plain path line, so the ``.pth`` files inside that directory, among them
the editable install's finder for the source tree, are not processed. The wheel then goes in with
``--no-deps --no-index``. About 40 s of CPU on the 2-core development machine, most of it three interpreters
importing verl.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import verl_rlif

ROOT = Path(__file__).resolve().parents[1]
ANYWHERE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache*")
AT_THE_ROOT = {"outputs", "data", "logs", "checkpoints"}  # run output (.gitignore); verl_rlif/data/ is source


def not_source(folder: str, names: list[str]) -> set[str]:
    return ANYWHERE(folder, names) | (AT_THE_ROOT & set(names) if Path(folder) == ROOT else set())


BUILD = (
    "import sys; from setuptools import build_meta as b; "
    "print(getattr(b, 'build_' + sys.argv[1])(sys.argv[2]))"  # the PEP 517 hooks, in this environment (no download)
)
OWN_CONFIG = """\
hydra:
  searchpath: [pkg://verl.trainer.config, pkg://verl_rlif.configs]
defaults: [ppo_trainer, rlif_plugin, _self_]
actor_rollout_ref:
  actor: {use_dynamic_bsz: true}
  rollout: {name: vllm}
"""


def build(kind: str, source: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", BUILD, kind, str(out)], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(sdist, wheel built from that sdist), from a copy of the source tree (the build writes into its tree)."""
    tmp = tmp_path_factory.mktemp("dist")
    shutil.copytree(ROOT, tmp / "src", ignore=not_source)
    sdist = build("sdist", tmp / "src", tmp)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    return sdist, build("wheel", unpacked, tmp)


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv holding only the wheel, plus this environment's dependencies; returns its bin/ directory."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    python = home / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_verl_rlif_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    done = subprocess.run([*install, str(dist[1])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return home / "bin"


@pytest.fixture
def empty(tmp_path):
    (tmp_path / "here").mkdir()
    return tmp_path / "here"


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VERL_", "RLIF_"))}
    env["PATH"] = f"{venv}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_both_archives_carry_license_typing_marker_and_configs(dist):
    sdist, wheel = dist
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    configs = {"rlif.yaml", "rlif_plugin.yaml", "math_7b_fsdp.yaml", "preset/vote_only.yaml", "demo/cpu.yaml"}
    for name in configs | {"py.typed"}:
        path = f"verl_rlif/{name}" if name == "py.typed" else f"verl_rlif/configs/{name}"
        assert path in in_sdist and path in in_wheel, path
    assert "LICENSE" in in_sdist and any(name.endswith(".dist-info/licenses/LICENSE") for name in in_wheel)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in in_wheel if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and f"Project-URL: Homepage, {verl_rlif.HOMEPAGE}" in metadata
    assert f"Version: {verl_rlif.__version__}" in metadata
    urls = [line.split(", ", 1)[1] for line in metadata.splitlines() if line.startswith("Project-URL: ")]
    assert len(urls) >= 3 and all(url.startswith(verl_rlif.HOMEPAGE) for url in urls)  # one home, as in the texts


def test_the_installed_package_is_the_wheel_not_the_source_tree(venv, empty):
    done = run(venv, empty, "python", "-c", "import verl_rlif, verl_rlif.configs as c; print(c.CONFIG_DIR)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(venv.parent)) and str(ROOT) not in done.stdout


def test_version(venv, empty):
    done = run(venv, empty, "verl-rlif", "--version")
    assert done.returncode == 0 and done.stdout.startswith(f"verl-rlif {verl_rlif.__version__} (verl 0.9.1")


def test_check_a_shipped_config_and_one_of_ones_own(venv, empty):
    done = run(venv, empty, "verl-rlif", "check", "--config-name", "math_7b_fsdp", "preset=vote_only")
    assert done.returncode == 0, done.stderr
    assert "math_7b_fsdp is valid" in done.stdout
    (empty.parent / "mine").mkdir()
    (empty.parent / "mine" / "my_run.yaml").write_text(OWN_CONFIG)
    done = run(venv, empty, "verl-rlif", "check", "--config-path", "../mine", "--config-name", "my_run")
    assert done.returncode == 0, done.stderr
    assert "my_run is valid" in done.stdout


def test_main_ppo_composes_the_packaged_configs(venv, empty):
    # --resolve: the loss mode is an interpolation through our resolver, which the plugin registers as verl loads it
    args = ["--config-path", "pkg://verl_rlif.configs", "--config-name", "rlif", "--cfg", "job", "--resolve"]
    done = run(venv, empty, "python", "-m", "verl.trainer.main_ppo", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loss_mode: rlif_kl_cov" in done.stdout and "rlif:" in done.stdout


def test_pipeline(venv, empty):
    done = run(venv, empty, "verl-rlif", "pipeline")
    assert done.returncode == 0, done.stderr
    assert "KL-Cov:" in done.stdout
    assert not list(empty.iterdir())  # nothing written where it ran


def test_vote_on_verls_rollout_dump_and_plot_of_its_file_logger(venv, empty):
    import json

    dump = empty.parent / "rollout"  # trainer.rollout_data_dir: one {step}.jsonl per step
    dump.mkdir()
    lines = [
        {"input": "1+1?", "output": rf"\boxed{{{a}}}", "gts": "2", "uid": f"p_{i}_0", "step": 1}
        for i, a in enumerate("223")
    ]
    (dump / "1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run(venv, empty, "verl-rlif", "vote", "../rollout", "--output", "voted.jsonl")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pseudo_label_accuracy"] == 1.0
    metrics = empty.parent / "metrics.jsonl"  # what trainer.logger=[console,file] writes
    metrics.write_text(
        "".join(json.dumps({"step": s, "data": {"rlif/majority_ratio/mean": s / 4}}) + "\n" for s in (1, 2))
    )
    done = run(venv, empty, "verl-rlif", "plot", "../metrics.jsonl")
    assert done.returncode == 0, done.stderr
    assert (empty / "collapse_monitors.png").stat().st_size > 10_000 and "metrics did not log " in done.stderr
    assert "actor/entropy (policy entropy)" in done.stderr
