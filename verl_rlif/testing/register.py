"""Opt-in registrations for the CPU end-to-end run: ``VERL_USE_EXTERNAL_MODULES=verl_rlif.testing.register``.

verl imports this module from ``verl/__init__.py`` (in every process that has the variable: the launcher, and
every Ray worker through ``ray_kwargs.ray_init.runtime_env.env_vars``), after ``verl.plugin.platform`` is loaded
and before any platform is resolved. The platform is registered at once (verl resolves it lazily, on first use);
the engines and the rollout register when verl finishes importing their registries, like verl-rlif's adapters.
In verl's distributed workers on the CPU platform it also starts the gloo process group (see
``cpu_platform.init_worker_process_group`` for why).
"""

from verl_rlif import register
from verl_rlif.testing import cpu_platform  # registers platform "rlif_cpu"

register.watch("verl.workers.engine", "verl_rlif.testing.cpu_engines")
register.watch("verl.workers.rollout", "verl_rlif.testing.hf_rollout")

cpu_platform.init_worker_process_group()
