"""Entry point of the ``verl.plugins`` group (and of ``VERL_USE_EXTERNAL_MODULES=verl_rlif.register``)."""
