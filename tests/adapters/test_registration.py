"""Registration through the installed entry point, in fresh processes, exactly as verl loads plugins."""

import json
import os
import subprocess
import sys

PROBE = """
import json, verl
from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.workers.engine import EngineRegistry
def owner(lookup, name):
    try:
        return lookup(name).__module__
    except Exception:
        return None
print(json.dumps({
    "rlif_kl_cov": owner(get_policy_loss_fn, "rlif_kl_cov"),
    "rlif_gdpo": owner(get_adv_estimator_fn, "rlif_gdpo"),
    "reward_manager": owner(get_reward_manager_cls, "rlif"),
    "trainer": owner(get_trainer_cls, "rlif"),
    "fsdp_engine": EngineRegistry.get_engine_cls("language_model", "fsdp").__module__,
    "megatron_engine": EngineRegistry.get_engine_cls("language_model", "megatron").__module__,
    "kl_cov": owner(get_policy_loss_fn, "kl_cov"),
    "gdpo": owner(get_adv_estimator_fn, "gdpo"),
    "sync": owner(get_trainer_cls, "sync"),
}))
"""


def probe(**env):
    full_env = {**os.environ, "VERL_ENGINE_VENDOR": "rlif", **env}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full_env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_entry_point_registers_everything_and_leaves_verl_builtins_alone():
    found = probe()
    assert found["rlif_kl_cov"] == "verl_rlif.adapters.policy_loss"
    assert found["rlif_gdpo"] == "verl_rlif.adapters.advantage"
    assert found["reward_manager"] == "verl_rlif.adapters.reward_manager"
    assert found["trainer"] == "verl_rlif.adapters.trainer"
    assert found["fsdp_engine"] == "verl_rlif.adapters.fsdp_engine"
    assert found["megatron_engine"] == "verl_rlif.adapters.megatron_engine"
    # verl's own components under their own names are untouched
    assert found["kl_cov"] == found["gdpo"] == "verl.trainer.ppo.core_algos"
    assert found["sync"] == "verl.trainer.ppo.v1.trainer_sync"


def test_plugins_disabled_registers_nothing_and_the_env_fallback_works():
    off = probe(VERL_USE_EXTERNAL_PLUGINS="none")
    assert off["rlif_kl_cov"] is off["trainer"] is off["reward_manager"] is None
    assert off["fsdp_engine"].startswith("verl.")
    fallback = probe(VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="verl_rlif.register")
    assert fallback["trainer"] == "verl_rlif.adapters.trainer"
    assert fallback["fsdp_engine"] == "verl_rlif.adapters.fsdp_engine"


def test_importing_our_fsdp_engine_first_records_no_load_error():
    """Tests and benches import ``verl_rlif.adapters.fsdp_engine`` before verl's engine package; the plugin's engine
    registration then runs inside that import and must not fail on the half-built module."""
    code = (
        "import json, verl_rlif.adapters.fsdp_engine as ours\n"
        "from verl_rlif import register\n"
        "from verl.workers.engine import EngineRegistry\n"
        "print(json.dumps([register.LOAD_ERRORS, EngineRegistry.get_engine_cls('language_model', 'fsdp').__module__]))"
    )
    env = {**os.environ, "VERL_ENGINE_VENDOR": "rlif"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors, engine = json.loads(done.stdout.strip().splitlines()[-1])
    assert errors == {} and engine == "verl_rlif.adapters.fsdp_engine"
