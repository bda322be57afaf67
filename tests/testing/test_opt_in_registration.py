"""The test-support package registers only when asked, through verl's own external-module switch."""

import json
import os
import subprocess
import sys

PROBE = """
import json, os, verl
from verl.plugin.platform import PlatformRegistry, get_platform
from verl.workers.engine import EngineRegistry
from verl.workers.rollout.replica import RolloutReplicaRegistry
from verl.workers.rollout.base import get_rollout_class
def rollout_class(name):
    try:
        cls = get_rollout_class(name, "async")  # what verl's actor workers call
    except AssertionError:
        return None
    return f"{cls.__module__}.{cls.__qualname__}"
def replica_class(name):
    try:
        return RolloutReplicaRegistry.get(name).__qualname__  # what verl's LLMServerManager calls
    except ValueError:
        return None
def engine(device, vendor):
    os.environ["VERL_ENGINE_DEVICE"], os.environ["VERL_ENGINE_VENDOR"] = device, vendor
    try:
        return EngineRegistry.get_engine_cls("language_model", "fsdp2").__module__
    except ValueError:
        return None
platform = get_platform()
print(json.dumps({
    "platforms": list(PlatformRegistry.registered_names()),
    "device": platform.device_name,
    "backend": platform.communication_backend_name(),
    "rollouts": sorted(RolloutReplicaRegistry._registry),
    "rollout_class": rollout_class("rlif_hf"),
    "replica_class": replica_class("rlif_hf"),
    "cpu_rlif_engine": engine("cpu", "rlif"),
    "cpu_engine": engine("cpu", "cpu"),
    "cuda_rlif_engine": engine("cuda", "rlif"),
}))
"""


def probe(**env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "VERL_USE_EXTERNAL_MODULES")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**full_env, **env}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_registers_platform_cpu_engines_and_rollout_when_asked():
    found = probe(VERL_USE_EXTERNAL_MODULES="verl_rlif.testing.register", VERL_PLATFORM="rlif_cpu")
    assert "rlif_cpu" in found["platforms"]
    assert (found["device"], found["backend"]) == ("cpu", "gloo")
    assert "rlif_hf" in found["rollouts"] and {"vllm", "sglang"} <= set(found["rollouts"])
    assert found["rollout_class"] == "verl_rlif.testing.hf_rollout.RLIFHFServerAdapter"
    assert found["replica_class"] == "RLIFHFReplica"
    assert found["cpu_rlif_engine"] == "verl_rlif.adapters.fsdp_engine"  # our engine, for the CPU too
    assert found["cpu_engine"] == "verl.workers.engine.fsdp.transformer_impl"  # verl's, for other vendors
    assert found["cuda_rlif_engine"] == "verl_rlif.adapters.fsdp_engine"  # GPU registrations untouched


def test_nothing_of_it_without_the_switch():
    found = probe()
    assert "rlif_cpu" not in found["platforms"] and found["device"] != "cpu"  # never auto-detected
    assert "rlif_hf" not in found["rollouts"] and found["rollout_class"] is found["replica_class"] is None
    assert found["cpu_rlif_engine"] is found["cpu_engine"] is None


def test_registered_platform_is_never_auto_detected():
    found = probe(VERL_USE_EXTERNAL_MODULES="verl_rlif.testing.register")  # no VERL_PLATFORM
    assert "rlif_cpu" in found["platforms"] and found["device"] != "cpu"
