"""verl platform ``rlif_cpu``: run verl's workers on the CPU with gloo (tests and the CPU demo only).

verl's platform interface (``verl.plugin.platform.PlatformBase``) names CPU as a target but ships only
CUDA/NPU/ROCm. Registered under ``rlif_cpu`` and selected with ``VERL_PLATFORM=rlif_cpu``; auto-detection never
picks it.

Resource pools: verl's ``ResourcePoolManager`` always builds accelerator bundles and checks the cluster for
``GPU``/``NPU`` resources. Ray resources are logical, so the CPU run starts Ray with ``num_gpus`` equal to the
number of training processes (``ray_kwargs.ray_init.num_gpus``) and this platform reports ``GPU`` as its resource
name: each "GPU" is a slot for one CPU worker process, and no device is behind it.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

NAME = "rlif_cpu"


def _noop(*args, **kwargs):
    return None


def _cpu_device_module() -> SimpleNamespace:
    """The ``torch.<device>`` namespace verl calls through ``get_torch_device()``, for the CPU.

    ``torch.cpu`` has the stream/synchronize part; memory management and per-device RNG do not exist on the CPU,
    so they are no-ops or the global CPU generator.
    """
    cpu = torch.cpu
    return SimpleNamespace(
        is_available=lambda: True,
        current_device=lambda: "cpu",
        device_count=lambda: 1,
        set_device=_noop,
        synchronize=cpu.synchronize,
        current_stream=cpu.current_stream,
        stream=cpu.stream,
        Stream=cpu.Stream,
        Event=cpu.Event,
        empty_cache=_noop,
        ipc_collect=_noop,
        set_per_process_memory_fraction=_noop,
        reset_peak_memory_stats=_noop,
        memory_allocated=lambda *a, **k: 0,
        memory_reserved=lambda *a, **k: 0,
        max_memory_allocated=lambda *a, **k: 0,
        max_memory_reserved=lambda *a, **k: 0,
        mem_get_info=lambda *a, **k: (0, 0),
        get_device_name=lambda *a, **k: "cpu",
        get_rng_state=lambda *a, **k: torch.get_rng_state(),
        set_rng_state=lambda state, *a, **k: torch.set_rng_state(state),
        manual_seed=torch.manual_seed,
        manual_seed_all=torch.manual_seed,
    )


@PlatformRegistry.register(platform=NAME)
class RLIFCPUPlatform(PlatformBase):
    """CPU device, gloo collectives, Ray ``GPU`` resources as logical worker slots."""

    _module = _cpu_device_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return False  # never auto-detected: only VERL_PLATFORM=rlif_cpu selects it

    def current_device(self) -> str:
        # verl passes this to `.to(...)` and `torch.device(...)`; an int would mean cuda:<int>
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for its (logical) GPU resource; nothing reads it on the CPU

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def init_worker_process_group() -> bool:
    """In a verl Ray worker on this platform, start torch.distributed with gloo before verl tries to.

    verl 0.9.1 initialises every worker's default group with ``f"cpu:gloo,{device}:{backend}"``
    (``verl.utils.distributed.initialize_global_process_group_ray``), which torch rejects when the device is the
    CPU ("Duplicate device type cpu"); verl skips its own call when a default group exists. verl puts ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` into each worker's environment when it creates the actor,
    so the group can be formed as soon as the worker imports verl. Returns whether it started one.
    """
    import os

    import torch.distributed as dist

    if os.environ.get("VERL_PLATFORM", "").strip().lower() != NAME or os.environ.get("WG_BACKEND") != "ray":
        return False
    if not dist.is_available() or dist.is_initialized() or "MASTER_ADDR" not in os.environ:
        return False
    dist.init_process_group(backend="gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    return True
