"""The core's CLI commands (`run`, `runs`, `export`, `import`, `report`, `env`, `sensors`, `corpus`).

Each module has ``register(subparsers)``; bad input raises ``base.UsageError``, ``spec.SpecError`` or
``store.StoreError`` (one line, exit 2). The labs' commands live in their folders.
"""
