"""verl-rlif: reinforcement learning from internal feedback as a verl 0.9.1 plugin.

Importing this package imports no verl: the pure math lives in :mod:`verl_rlif.core`, the verl
touchpoints in :mod:`verl_rlif.adapters`, registered by :mod:`verl_rlif.register`.
"""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (tool.setuptools.dynamic)

HOMEPAGE = "https://github.com/verl-rlif/verl-rlif"
"""The project's home, also in pyproject.toml's [project.urls] (a test keeps the two equal)."""


def docs_url(page: str) -> str:
    """Where a pip user reads ``docs/<page>`` (the wheel carries no docs/): for help and error texts."""
    return f"{HOMEPAGE}/blob/main/docs/{page}"
