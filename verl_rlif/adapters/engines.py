"""Imported when verl's engine package loads: registers our FSDP engine, and our Megatron engine where
Megatron imports, then the variants for verl's other FSDP/Megatron-derived backends (``engine_variants``). A
missing Megatron is recorded (``verl_rlif.register.LOAD_ERRORS``), not fatal: FSDP users need not install it."""

from verl_rlif import register
from verl_rlif.adapters import fsdp_engine  # noqa: F401  (registers on import)

try:
    from verl_rlif.adapters import megatron_engine  # noqa: F401
except ImportError as exc:
    register.LOAD_ERRORS["verl_rlif.adapters.megatron_engine"] = f"{type(exc).__name__}: {exc}"

# A process that imports fsdp_engine by hand (a test, a bench) reaches this module from inside that import, through
# verl's engine package: the variants subclass a class that does not exist yet, and that process does not need them.
if hasattr(fsdp_engine, "RLIFFSDPEngineWithLMHead"):
    from verl_rlif.adapters import engine_variants  # noqa: F401  (after megatron_engine: MindSpeed extends it)
