"""Where every number is kept: runs and points in SQLite or PostgreSQL, their schema, device leases, and
moving runs between stores and machines.

- ``records.py``  PointResult, the record of one point (plain data)
- ``backend.py``  where a store lives (a file or a ``postgresql://`` URL) and how it is reached
- ``schema.py``   columns and migrations, written once for both back ends
- ``db.py``       the Store: runs with provenance, points committed one by one
- ``leases.py``   one sweep per device across every process and machine sharing the store
- ``copy.py``     every run from one store to another, nothing lost
- ``exchange.py`` JSON export, validated import, atomic file writes
- ``reference.py`` reference runs shipped under data/reference/, read-only
"""

from .backend import Location, locate
from .db import Store, StoreError, default_db_path

__all__ = ["Location", "Store", "StoreError", "default_db_path", "locate"]
