"""Self-certainty for verl's other engine backends whose LM engine subclasses verl's FSDP or Megatron LM engine.

verl 0.9.1 has two: ``fsdp_turbo`` (``FSDPTurboEngineWithLMHead``, a subclass of ``FSDPEngineWithLMHead``, cuda/npu)
and ``megatron`` on npu (MindSpeed's ``MindspeedEngineWithLMHead``, a subclass of ``MegatronEngineWithLMHead``).
Each gets our engine mixed over verl's: the class order is ours, then verl's backend engine, then verl's FSDP or
Megatron LM engine, so our overrides run first and ``super()`` reaches the backend's own code. Registered under
vendor ``rlif`` like the others. Every other backend (veomni, torchtitan, automodel) builds its logits elsewhere
and is refused by ``verl-rlif check`` when self-certainty is a reward (``checks.SELF_CERTAINTY_BACKENDS``).
"""

from __future__ import annotations

from verl.workers import engine as verl_engines
from verl.workers.engine import EngineRegistry

from verl_rlif.adapters.engine_flags import VENDOR
from verl_rlif.adapters.fsdp_engine import RLIFFSDPEngineWithLMHead


@EngineRegistry.register(model_type="language_model", backend="fsdp_turbo", device=["cuda", "npu"], vendor=VENDOR)
class RLIFFSDPTurboEngineWithLMHead(RLIFFSDPEngineWithLMHead, verl_engines.FSDPTurboEngineWithLMHead):
    """verl's FSDP-Turbo LM engine plus ``model_output["self_certainty"]`` on request."""


def register_mindspeed() -> type | None:
    """Megatron on npu is MindSpeed's engine; registered only where both it and our Megatron engine import."""
    if verl_engines.MindspeedEngineWithLMHead is None:
        return None
    try:
        from verl_rlif.adapters.megatron_engine import RLIFMegatronEngineWithLMHead
    except ImportError:  # recorded by verl_rlif.adapters.engines
        return None

    class RLIFMindspeedEngineWithLMHead(RLIFMegatronEngineWithLMHead, verl_engines.MindspeedEngineWithLMHead):
        """MindSpeed's Megatron LM engine (npu) plus ``self_certainty`` in the model outputs on request."""

    register = EngineRegistry.register(model_type="language_model", backend="megatron", device="npu", vendor=VENDOR)
    return register(RLIFMindspeedEngineWithLMHead)


register_mindspeed()
