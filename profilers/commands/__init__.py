"""The labs' CLI subcommands (`python -m profilers train|numerics|drift|…`), one module per lab.

Each module has ``register(subparsers)`` and is listed in ``cli.LAB_COMMANDS``; bad input raises
``cli.UsageError``, ``spec.SpecError`` or ``store.StoreError`` (one line, exit 2).
"""
