"""The store's schema: point columns derived from PointResult, and the migrations between versions.

The schema version lives in ``PRAGMA user_version`` (SQLite) or the one-row table ``normscope_schema``
(PostgreSQL); a migration never reads the current dataclass, so an old store upgrades the same way forever.
Each migration writes its DDL through the back end's ``Dialect`` (integer, real and key types): a SQLite store
gets the same tables it always did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sqlalchemy import Connection

from .backend import Dialect
from .records import PointResult

SCHEMA_VERSION = 5
# The newest version that changed what a run holds (columns, spec and machine records). Later ones (5: device
# leases) add only what writers share, so exports carry this number (an older NormScope still imports them)
# and a store at it or later is read without upgrading.
RUN_RECORD_VERSION = 4
RUN_STATUSES = ("running", "completed", "cancelled", "failed", "interrupted")

# Point columns and their types, derived from PointResult so the two cannot drift.
_POINT_FIELDS = [f for f in dataclasses.fields(PointResult) if f.name != "extra"]


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


def _sql_type(d: Dialect, name: str) -> str:
    typ = POINT_COLUMNS[name]
    return "TEXT" if typ is str else d.real if typ is float else d.integer


def _script(con: Connection, script: str) -> None:
    """Statements separated by semicolons, one by one inside the caller's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            con.exec_driver_sql(statement)


def _v1(con: Connection, d: Dialect) -> None:
    cols = ",\n  ".join(
        f"{name} {_sql_type(d, name)}{' NOT NULL' if name in REQUIRED_POINT else ''}" for name in _V1_POINT_COLUMNS
    )
    _script(
        con,
        f"""
        CREATE TABLE runs (
          id {d.primary_key},
          uid TEXT NOT NULL UNIQUE,
          status TEXT NOT NULL,
          label TEXT,
          created_at TEXT NOT NULL,
          finished_at TEXT,
          spec_json TEXT NOT NULL,
          machine_json TEXT NOT NULL,
          versions_json TEXT NOT NULL,
          copy_gbps {d.real},
          idle_power_w {d.real},
          points_planned {d.integer},
          error TEXT,
          source TEXT NOT NULL DEFAULT 'local',
          host TEXT,
          pid {d.integer},
          pid_started {d.real}
        );
        CREATE TABLE points (
          id {d.primary_key},
          run_id {d.integer} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          seq {d.integer} NOT NULL,
          {cols},
          extra_json TEXT NOT NULL DEFAULT '{{}}',
          created_at TEXT NOT NULL
        );
        CREATE INDEX points_run ON points(run_id, seq);
        """,
    )


def _v2(con: Connection, d: Dialect) -> None:
    """Energy, kernel breakdown and sensor telemetry."""
    for name in _V2_POINT_COLUMNS:
        con.exec_driver_sql(f"ALTER TABLE points ADD COLUMN {name} {_sql_type(d, name)}")
    con.exec_driver_sql("ALTER TABLE runs ADD COLUMN series_json TEXT")
    con.exec_driver_sql("ALTER TABLE runs ADD COLUMN sensors_json TEXT")


def _v3(con: Connection, d: Dialect) -> None:
    """Measurement v2 (gate levels, cache state, copy ladder, rounds and paired ratios), blocks, and run kinds
    with artifacts: the labs' results (tables, curves, profiles) as JSON documents attached to a run."""
    for name in _V3_POINT_COLUMNS:
        con.exec_driver_sql(f"ALTER TABLE points ADD COLUMN {name} {_sql_type(d, name)}")
    con.exec_driver_sql("ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'kernels'")
    con.exec_driver_sql("ALTER TABLE runs ADD COLUMN extra_json TEXT")
    _script(
        con,
        f"""
        CREATE TABLE artifacts (
          id {d.primary_key},
          run_id {d.integer} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          name TEXT NOT NULL,
          json TEXT NOT NULL,
          created_at TEXT NOT NULL,
          UNIQUE(run_id, name)
        );
        """,
    )


def _v4(con: Connection, d: Dialect) -> None:
    """CPU pages and placement in the spec and machine records (JSON: no column changes). The version moves so
    that an older NormScope refuses these stores and exports with "upgrade NormScope", not with an unknown
    spec field."""


def _v5(con: Connection, d: Dialect) -> None:
    """Device leases: one sweep per device across every machine sharing the store (``leases.py``). A lease is
    held by one process, renewed by its heartbeat, and lapses at ``expires_at`` (the database's clock)."""
    _script(
        con,
        f"""
        CREATE TABLE leases (
          device TEXT PRIMARY KEY,
          host TEXT NOT NULL,
          device_type TEXT NOT NULL,
          cpus TEXT,
          name TEXT NOT NULL,
          holder TEXT NOT NULL,
          pid {d.integer},
          pid_started {d.real},
          purpose TEXT,
          acquired_at {d.real} NOT NULL,
          heartbeat_at {d.real} NOT NULL,
          expires_at {d.real} NOT NULL
        );
        """,
    )


MIGRATIONS: dict[int, Callable[[Connection, Dialect], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5}
