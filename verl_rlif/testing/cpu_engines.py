"""verl's FSDP language-model engine and verl-rlif's (vendor ``rlif``) registered for device ``cpu``.

verl 0.9.1 registers its engines for ``cuda`` and ``npu`` only; the classes themselves run on the CPU with gloo
(a world of one process here). Same classes, one more key in verl's ``EngineRegistry``.
"""

from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_rlif.adapters.engine_flags import VENDOR
from verl_rlif.adapters.fsdp_engine import RLIFFSDPEngineWithLMHead

DEVICE = "cpu"

EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=DEVICE)(FSDPEngineWithLMHead)
EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device=DEVICE, vendor=VENDOR)(
    RLIFFSDPEngineWithLMHead
)
