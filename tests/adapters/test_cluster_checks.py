"""``verl-rlif node-check`` / ``ray-nodes``: the per-node checks the SLURM script runs (here, on the real verl)."""

import sys

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


def test_alive_lists_the_hostnames_of_alive_nodes(monkeypatch, capsys):
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
    assert main(["ray-nodes", "10.0.0.1:6379"]) == 0
    assert capsys.readouterr().out.split() == ["gpu-01.cluster", "gpu-02.cluster"]
    assert seen["address"] == "10.0.0.1:6379" and seen["shut"]
