"""Test support: run verl's real ``main_ppo`` on a CPU-only machine, for the test suite and the CPU demo.

Nothing here is loaded unless asked for. ``VERL_USE_EXTERNAL_MODULES=verl_rlif.testing.register`` (verl's own
switch for external modules, read by ``import verl`` in every process) registers, through verl's registries:

* platform ``rlif_cpu`` (``verl.plugin.platform.PlatformRegistry``; selected with ``VERL_PLATFORM=rlif_cpu``):
  device ``cpu``, gloo, Ray's logical ``GPU`` resource as the per-worker slot;
* FSDP engines for device ``cpu`` (``EngineRegistry``): verl's own and verl-rlif's (vendor ``rlif``);
* rollout ``rlif_hf`` (``RolloutReplicaRegistry`` and the rollout-class table): a server backed by transformers
  ``generate`` that returns token ids and log-probs and receives the actor's weights before each rollout.

GPU users keep vllm/sglang and never load this package. See docs/development.md ("The CPU end-to-end run").
"""
