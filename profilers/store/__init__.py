"""Where every number is kept: SQLite runs and points, their schema, and moving runs between machines.

- ``records.py``  PointResult, the record of one point (plain data)
- ``schema.py``   columns and migrations (``PRAGMA user_version``)
- ``db.py``       the Store: runs with provenance, points committed one by one
- ``exchange.py`` JSON export, validated import, atomic file writes
- ``reference.py`` reference runs shipped under data/reference/, read-only
"""

from .db import Store, StoreError, default_db_path

__all__ = ["Store", "StoreError", "default_db_path"]
