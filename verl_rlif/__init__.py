"""verl-rlif: reinforcement learning from internal feedback as a verl 0.9.1 plugin.

Importing this package imports no verl: the pure math lives in :mod:`verl_rlif.core`, the verl
touchpoints in :mod:`verl_rlif.adapters`, registered by :mod:`verl_rlif.register`.
"""

__version__ = "0.1.0"
