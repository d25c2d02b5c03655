"""The store's schema: point columns derived from PointResult, and the migrations between versions.

The schema version lives in ``PRAGMA user_version``; a migration never reads the
current dataclass, so an old store upgrades the same way forever.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

from .records import PointResult

SCHEMA_VERSION = 4
RUN_STATUSES = ("running", "completed", "cancelled", "failed", "interrupted")

# Point columns and their types, derived from PointResult so the two cannot drift.
_POINT_FIELDS = [f for f in dataclasses.fields(PointResult) if f.name != "extra"]
SQL_TYPE = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}


def _py_type(f: dataclasses.Field) -> type:
    t = str(f.type)
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if t.startswith(name):
            return typ
    raise TypeError(f"unsupported field type {t}")


POINT_COLUMNS: dict[str, type] = {f.name: _py_type(f) for f in _POINT_FIELDS}
REQUIRED_POINT = ("variant", "impl", "device", "dtype", "tokens", "hidden", "mode", "status")
# Columns each schema version introduced; a migration never reads the current dataclass.
_V2_POINT_COLUMNS = (
    "energy_method",
    "energy_note",
    "energy_window_s",
    "energy_repeats",
    "energy_mj_per_call",
    "energy_j_per_mtok",
    "energy_mean_power_w",
    "energy_spread_pct",
    "energy_dynamic_mj_per_call",
    "kernels_per_call",
    "kernel_us_per_call",
    "launch_overhead_pct",
    "trace_path",
)
_V3_POINT_COLUMNS = (
    "gate",
    "gate_note",
    "error_multiple",
    "cache_state",
    "working_set_bytes",
    "ceiling_gbps",
    "roofline_level",
    "rounds",
    "visits",
    "visits_disturbed",
    "ratio_baseline",
    "ratio",
    "ratio_lo",
    "ratio_hi",
    "block",
    "placement",
    "energy_loop_us",
    "memops_per_call",
)
_V1_POINT_COLUMNS = tuple(c for c in POINT_COLUMNS if c not in _V2_POINT_COLUMNS + _V3_POINT_COLUMNS)


def _v1(con: sqlite3.Connection) -> None:
    cols = ",\n  ".join(
        f"{name} {SQL_TYPE[POINT_COLUMNS[name]]}{' NOT NULL' if name in REQUIRED_POINT else ''}"
        for name in _V1_POINT_COLUMNS
    )
    con.executescript(
        f"""
        CREATE TABLE runs (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          uid TEXT NOT NULL UNIQUE,
          status TEXT NOT NULL,
          label TEXT,
          created_at TEXT NOT NULL,
          finished_at TEXT,
          spec_json TEXT NOT NULL,
          machine_json TEXT NOT NULL,
          versions_json TEXT NOT NULL,
          copy_gbps REAL,
          idle_power_w REAL,
          points_planned INTEGER,
          error TEXT,
          source TEXT NOT NULL DEFAULT 'local',
          host TEXT,
          pid INTEGER,
          pid_started REAL
        );
        CREATE TABLE points (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          seq INTEGER NOT NULL,
          {cols},
          extra_json TEXT NOT NULL DEFAULT '{{}}',
          created_at TEXT NOT NULL
        );
        CREATE INDEX points_run ON points(run_id, seq);
        """
    )


def _v2(con: sqlite3.Connection) -> None:
    """Energy, kernel breakdown and sensor telemetry."""
    for name in _V2_POINT_COLUMNS:
        con.execute(f"ALTER TABLE points ADD COLUMN {name} {SQL_TYPE[POINT_COLUMNS[name]]}")
    con.execute("ALTER TABLE runs ADD COLUMN series_json TEXT")
    con.execute("ALTER TABLE runs ADD COLUMN sensors_json TEXT")


def _v3(con: sqlite3.Connection) -> None:
    """Measurement v2 (gate levels, cache state, copy ladder, rounds and paired ratios), blocks, and run kinds
    with artifacts: the labs' results (tables, curves, profiles) as JSON documents attached to a run."""
    for name in _V3_POINT_COLUMNS:
        con.execute(f"ALTER TABLE points ADD COLUMN {name} {SQL_TYPE[POINT_COLUMNS[name]]}")
    con.execute("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'kernels'")
    con.execute("ALTER TABLE runs ADD COLUMN extra_json TEXT")
    con.executescript(
        """
        CREATE TABLE artifacts (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          name TEXT NOT NULL,
          json TEXT NOT NULL,
          created_at TEXT NOT NULL,
          UNIQUE(run_id, name)
        );
        """
    )


def _v4(con: sqlite3.Connection) -> None:
    """CPU pages and placement in the spec and machine records (JSON: no column changes). The version moves so
    that an older NormScope refuses these stores and exports with "upgrade NormScope", not with an unknown
    spec field."""


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4}
