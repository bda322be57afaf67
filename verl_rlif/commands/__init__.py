"""One module per ``verl-rlif`` subcommand. Each exposes ``add_parser(subparsers)``, which adds the subcommand with
its flags and sets ``run``, and ``run(args) -> exit code``. :mod:`verl_rlif.cli` assembles them in :data:`MODULES`
order; heavy imports (verl, Hydra, torch) happen inside ``run`` so that ``--help`` stays fast."""
