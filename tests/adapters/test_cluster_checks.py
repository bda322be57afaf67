"""``verl-rlif node-check`` / ``ray-nodes``: the per-node checks the SLURM script runs (here, on the real verl)."""

import os
import socket
import subprocess
import sys
import time

import pytest

from verl_rlif import register
from verl_rlif.cli import main


def test_check_plugin_passes_where_verl_loads_the_plugin(capsys):
    assert main(["node-check"]) == 0
    assert "verl-rlif plugin OK on" in capsys.readouterr().out


def test_check_plugin_names_a_disabled_entry_point(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "verl_rlif.register")  # as after `import verl` with VERL_USE_EXTERNAL_PLUGINS=none
    assert main(["node-check"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "VERL_USE_EXTERNAL_MODULES=verl_rlif.register" in out


def test_check_plugin_names_an_adapter_that_failed_to_register(monkeypatch, capsys):
    monkeypatch.setitem(register.LOAD_ERRORS, "verl_rlif.adapters.trainer", "ImportError: no transfer_queue")
    assert main(["node-check"]) == 1
    assert "verl_rlif.adapters.trainer failed to register: ImportError: no transfer_queue" in capsys.readouterr().out


@pytest.fixture
def listener():
    """A TCP port that accepts connections and never answers: where a Ray head would listen."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_alive_lists_the_hostnames_of_alive_nodes(monkeypatch, capsys, listener):
    ray = pytest.importorskip("ray")
    seen = {}
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: seen.update(shut=True))
    nodes = [
        {"NodeManagerHostname": "gpu-02.cluster", "Alive": True},
        {"NodeManagerHostname": "gpu-01.cluster", "Alive": True},
        {"NodeManagerHostname": "gpu-09.cluster", "Alive": False},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    assert main(["ray-nodes", listener]) == 0
    assert capsys.readouterr().out.split() == ["gpu-01.cluster", "gpu-02.cluster"]
    assert seen["address"] == listener and seen["shut"]


def test_job_nodes_are_named_by_their_resource_and_others_are_foreign(monkeypatch, capsys, listener):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    nodes = [  # two of this job's nodes on one host (as under a test Slurm), and another cluster's node
        {"NodeManagerHostname": "host", "Alive": True, "Resources": {"CPU": 8.0, "rlif_42_node-b": 1.0}},
        {"NodeManagerHostname": "host", "Alive": True, "Resources": {"CPU": 8.0, "rlif_42_node-a": 1.0}},
        {"NodeManagerHostname": "other", "Alive": True, "Resources": {"CPU": 8.0, "rlif_7_node-a": 1.0}},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    assert main(["ray-nodes", listener, "--job-resource", "rlif_42_"]) == 0
    assert capsys.readouterr().out.splitlines() == ["foreign other", "node-a", "node-b"]


def test_the_cli_and_the_library_share_one_default_timeout(monkeypatch, capsys):
    import inspect

    from verl_rlif import cluster

    library_default = inspect.signature(cluster.alive_nodes).parameters["timeout_s"].default
    seen = {}
    monkeypatch.setattr(cluster, "alive_nodes", lambda address, timeout_s, job: seen.update(timeout_s=timeout_s) or [])
    assert main(["ray-nodes", "127.0.0.1:1"]) == 0
    assert seen["timeout_s"] == library_default == cluster.RAY_NODES_TIMEOUT_S


def test_nothing_listening_is_told_apart_from_no_answer(capsys):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{free.getsockname()[1]}"
    free.close()  # nothing listens there now
    assert main(["ray-nodes", address, "--timeout-s", "2"]) == 3
    assert "nothing listens at" in capsys.readouterr().err


def test_a_port_that_never_answers_ends_the_query_in_time(listener, tmp_path):
    """The real Ray client against a port that accepts and stays silent: before, this waited without limit."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "verl_rlif.cli", "ray-nodes", listener, "--timeout-s", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path), "RAY_TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 4, done.stderr
    assert f"no answer from a Ray head at {listener} within 3s" in done.stderr
    assert time.monotonic() - start < 60
