"""The only package that imports verl: one small module per verl touchpoint.

Modules are imported by :mod:`verl_rlif.register` right after verl imports the registry each plugs into:

* ``policy_loss``: policy loss ``rlif_kl_cov`` (verl's ``POLICY_LOSS_REGISTRY``)
* ``advantage``: advantage estimator ``rlif_gdpo`` (verl's ``ADV_ESTIMATOR_REGISTRY``)
* ``reward_manager``: reward manager ``rlif`` (verl's reward-loop registry)
* ``trainer``: trainer mode ``rlif`` (verl's v1 ``TRAINER_REGISTRY``)
* ``engines``: FSDP/Megatron engines computing self-certainty (verl's ``EngineRegistry``, vendor ``rlif``)

``checks`` validates a composed config (``verl-rlif check`` and trainer init).
"""
