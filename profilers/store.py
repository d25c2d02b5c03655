"""SQLite store: runs with provenance, points committed one by one.

Crash safety comes from SQLite itself (WAL journal, one commit per point): a
process killed mid-sweep leaves every finished point readable. A run whose
process died while "running" is marked "interrupted" the next time a store is
opened on the same host. The schema version lives in ``PRAGMA user_version``;
older stores are migrated, newer ones refused.

Exports are plain JSON validated field by field on import; nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .records import PointResult
from .spec import DTYPES, IMPLS, MODES, TIMING_METHODS, VARIANTS, SpecError, SweepSpec

SCHEMA_VERSION = 2
EXPORT_FORMAT = "normscope-run"
RUN_STATUSES = ("running", "completed", "cancelled", "failed", "interrupted")
POINT_STATUSES = ("ok", "skipped", "failed")
DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "results.db"


class StoreError(ValueError):
    """A store or file problem the user can fix; the message names the fix."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_db_path() -> Path:
    env = os.environ.get("NORMSCOPE_DB")
    return Path(env) if env else DEFAULT_DB


# Point columns and their types, derived from PointResult so the two cannot drift.
_POINT_FIELDS = [f for f in dataclasses.fields(PointResult) if f.name != "extra"]
_SQL_TYPE = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}


def _py_type(f: dataclasses.Field) -> type:
    t = str(f.type)
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if t.startswith(name):
            return typ
    raise TypeError(f"unsupported field type {t}")


POINT_COLUMNS: dict[str, type] = {f.name: _py_type(f) for f in _POINT_FIELDS}
_REQUIRED_POINT = ("variant", "impl", "device", "dtype", "tokens", "hidden", "mode", "status")
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
_V1_POINT_COLUMNS = tuple(c for c in POINT_COLUMNS if c not in _V2_POINT_COLUMNS)


def _v1(con: sqlite3.Connection) -> None:
    cols = ",\n  ".join(
        f"{name} {_SQL_TYPE[POINT_COLUMNS[name]]}{' NOT NULL' if name in _REQUIRED_POINT else ''}"
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
        con.execute(f"ALTER TABLE points ADD COLUMN {name} {_SQL_TYPE[POINT_COLUMNS[name]]}")
    con.execute("ALTER TABLE runs ADD COLUMN series_json TEXT")
    con.execute("ALTER TABLE runs ADD COLUMN sensors_json TEXT")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1, 2: _v2}


def _process_start(pid: int) -> float | None:
    """Start time of a live process; None when it is gone (or a zombie awaiting its parent)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except Exception:  # no such process, or no permission
        return None


def _alive(pid: int | None, started: float | None) -> bool:
    if not pid:
        return False
    actual = _process_start(pid)
    if actual is None:
        return False
    return started is None or abs(actual - started) < 1.0


class Store:
    """One SQLite file. Every write commits before returning."""

    def __init__(self, path: str | os.PathLike[str] | None = None, readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                raise StoreError(f"no store at {self.path}: run a sweep first or pass --db PATH")
            uri = f"file:{self.path}?mode=ro"
            self.con = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.con = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            except (OSError, sqlite3.Error) as e:
                raise StoreError(f"cannot open store {self.path}: {e}; pass --db PATH to a writable file") from None
        self.con.row_factory = sqlite3.Row
        try:
            self.con.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                self.con.execute("PRAGMA journal_mode=WAL")
                self.con.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            if not readonly:
                self.mark_interrupted()
        except sqlite3.DatabaseError as e:
            self.con.close()
            raise StoreError(f"{self.path} is not a NormScope store ({e}): pass --db PATH to another file") from None

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.con.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema v{current}, newer than NormScope's v{SCHEMA_VERSION}: upgrade NormScope"
            )
        if current == SCHEMA_VERSION:
            return
        if self.readonly:
            raise StoreError(f"store {self.path} has schema v{current} and needs migrating: open it writable once")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.con:
                MIGRATIONS[version](self.con)
                self.con.execute(f"PRAGMA user_version={version}")

    def mark_interrupted(self) -> list[int]:
        """Runs left 'running' by a dead process on this host become 'interrupted'."""
        host = socket.gethostname()
        dead = [
            r["id"]
            for r in self.con.execute("SELECT id, host, pid, pid_started FROM runs WHERE status='running'")
            if r["host"] == host and not _alive(r["pid"], r["pid_started"])
        ]
        if dead:
            with self.con:
                self.con.executemany(
                    "UPDATE runs SET status='interrupted', finished_at=?, error=? WHERE id=?",
                    [(now_iso(), "the measuring process ended without finishing the run", i) for i in dead],
                )
        return dead

    # -- writing ---------------------------------------------------------------------
    def create_run(
        self,
        spec: SweepSpec,
        machine: dict[str, Any],
        versions: dict[str, Any],
        points_planned: int,
        label: str | None = None,
    ) -> int:
        pid = os.getpid()
        with self.con:
            cur = self.con.execute(
                """INSERT INTO runs (uid, status, label, created_at, spec_json, machine_json, versions_json,
                   points_planned, host, pid, pid_started) VALUES (?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    uuid.uuid4().hex,
                    "running",
                    label if label is not None else spec.label,
                    now_iso(),
                    spec.to_json(),
                    json.dumps(machine, sort_keys=True),
                    json.dumps(versions, sort_keys=True),
                    points_planned,
                    socket.gethostname(),
                    pid,
                    _process_start(pid),
                ),
            )
        return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields: Any) -> None:
        allowed = {"copy_gbps", "idle_power_w", "label", "error", "series", "sensors"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {bad}")
        for key in ("series", "sensors"):
            if key in fields:
                fields[f"{key}_json"] = json.dumps(fields.pop(key), sort_keys=True)
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.con:
            self.con.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def add_point(self, run_id: int, seq: int, result: PointResult) -> None:
        d = result.to_dict()
        cols = list(POINT_COLUMNS)
        values = [_clean(d[c]) for c in cols]
        with self.con:
            self.con.execute(
                f"INSERT INTO points (run_id, seq, {', '.join(cols)}, extra_json, created_at) "
                f"VALUES (?, ?, {', '.join('?' * len(cols))}, ?, ?)",
                (run_id, seq, *values, json.dumps(d["extra"], sort_keys=True), now_iso()),
            )

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(status)
        with self.con:
            self.con.execute(
                "UPDATE runs SET status=?, finished_at=?, error=COALESCE(?, error) WHERE id=?",
                (status, now_iso(), error, run_id),
            )

    def set_label(self, run_id: int, label: str | None) -> None:
        self.get_run(run_id)
        with self.con:
            self.con.execute("UPDATE runs SET label=? WHERE id=?", (label, run_id))

    def delete_run(self, run_id: int) -> None:
        self.get_run(run_id)
        with self.con:
            self.con.execute("DELETE FROM points WHERE run_id=?", (run_id,))
            self.con.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # -- reading ---------------------------------------------------------------------
    def list_runs(self) -> list[dict[str, Any]]:
        rows = self.con.execute(
            f"""SELECT {", ".join("r." + c for c in _RUN_LIST_COLUMNS)}, COUNT(p.id) AS points_done,
                      SUM(p.status='ok') AS points_ok, SUM(p.status='failed') AS points_failed,
                      SUM(p.status='skipped') AS points_skipped
               FROM runs r LEFT JOIN points p ON p.run_id = r.id GROUP BY r.id ORDER BY r.id DESC"""
        ).fetchall()
        return [_run_dict(r) for r in rows]

    def get_run(self, run_id: int) -> dict[str, Any]:
        row = self.con.execute(
            """SELECT r.*, COUNT(p.id) AS points_done, SUM(p.status='ok') AS points_ok,
                      SUM(p.status='failed') AS points_failed, SUM(p.status='skipped') AS points_skipped
               FROM runs r LEFT JOIN points p ON p.run_id = r.id WHERE r.id=? GROUP BY r.id""",
            (run_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.path}: list runs with `python -m profilers runs`")
        return _run_dict(row)

    def points(self, run_ids: int | Iterable[int]) -> list[dict[str, Any]]:
        ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
        if not ids:
            return []
        q = f"SELECT * FROM points WHERE run_id IN ({','.join('?' * len(ids))}) ORDER BY run_id, seq"
        return [_point_dict(r) for r in self.con.execute(q, ids)]

    def traced_run_ids(self) -> list[int]:
        """Runs holding at least one point with a kernel breakdown, newest first."""
        q = "SELECT DISTINCT run_id FROM points WHERE kernels_per_call IS NOT NULL ORDER BY run_id DESC"
        return [int(r[0]) for r in self.con.execute(q)]

    def points_table(self, run_ids: Iterable[int], with_extra: bool = False) -> Any:
        """Points of several runs as a pandas DataFrame: the fast path for charts and CSV/Parquet.

        ``with_extra`` adds ``extra_json`` (sensor summaries, kernel lists) as a JSON text column.
        """
        import pandas as pd

        ids = list(run_ids)
        names = ["id", "run_id", "seq", *POINT_COLUMNS] + (["extra_json"] if with_extra else [])
        if not ids:
            return pd.DataFrame(columns=names)
        cols = ", ".join(names)
        q = f"SELECT {cols} FROM points WHERE run_id IN ({','.join('?' * len(ids))}) ORDER BY run_id, seq"
        df = pd.read_sql_query(q, self.con, params=ids)
        df["noisy"] = df["noisy"].map({1: True, 0: False, None: None}).astype(object)
        return df

    # -- export / import ----------------------------------------------------------------
    def export_run(self, run_id: int) -> dict[str, Any]:
        run = self.get_run(run_id)
        exported = {k: run.get(k) for k in _EXPORT_RUN_FIELDS}
        points = []
        for p in self.points(run_id):
            points.append({k: p[k] for k in ("seq", *POINT_COLUMNS, "extra")})
        return {
            "format": EXPORT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "exported_at": now_iso(),
            "run": exported,
            "points": points,
        }

    def import_run(self, doc: Any, source: str = "import") -> int:
        """Validate an exported run field by field, then insert it in one transaction."""
        run, points = validate_export(doc)
        existing = self.con.execute("SELECT id FROM runs WHERE uid=?", (run["uid"],)).fetchone()
        if existing:
            raise StoreError(f"run {run['uid']} is already in this store as run {existing['id']}")
        status = "interrupted" if run["status"] == "running" else run["status"]
        with self.con:
            cur = self.con.execute(
                """INSERT INTO runs (uid, status, label, created_at, finished_at, spec_json, machine_json,
                   versions_json, copy_gbps, idle_power_w, points_planned, error, source, series_json, sensors_json)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    run["uid"],
                    status,
                    run["label"],
                    run["created_at"],
                    run["finished_at"],
                    json.dumps(run["spec"], sort_keys=True),
                    json.dumps(run["machine"], sort_keys=True),
                    json.dumps(run["versions"], sort_keys=True),
                    run["copy_gbps"],
                    run["idle_power_w"],
                    run["points_planned"],
                    run["error"],
                    source,
                    json.dumps(run["series"]) if run.get("series") is not None else None,
                    json.dumps(run["sensors"]) if run.get("sensors") is not None else None,
                ),
            )
            run_id = int(cur.lastrowid)
            cols = list(POINT_COLUMNS)
            self.con.executemany(
                f"INSERT INTO points (run_id, seq, {', '.join(cols)}, extra_json, created_at) "
                f"VALUES (?, ?, {', '.join('?' * len(cols))}, ?, ?)",
                [
                    (run_id, p["seq"], *[p.get(c) for c in cols], json.dumps(p.get("extra") or {}), now_iso())
                    for p in points
                ],
            )
        return run_id


_EXPORT_RUN_FIELDS = (
    "uid",
    "status",
    "label",
    "created_at",
    "finished_at",
    "spec",
    "machine",
    "versions",
    "copy_gbps",
    "idle_power_w",
    "points_planned",
    "error",
    "series",
    "sensors",
)
# the run list leaves out the (possibly large) telemetry series
_RUN_LIST_COLUMNS = (
    "id",
    "uid",
    "status",
    "label",
    "created_at",
    "finished_at",
    "spec_json",
    "machine_json",
    "versions_json",
    "copy_gbps",
    "idle_power_w",
    "points_planned",
    "error",
    "source",
    "host",
    "pid",
    "pid_started",
    "sensors_json",
)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _run_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["spec"] = json.loads(d.pop("spec_json"))
    d["machine"] = json.loads(d.pop("machine_json"))
    d["versions"] = json.loads(d.pop("versions_json"))
    for key in ("series", "sensors"):
        raw = d.pop(f"{key}_json", None)
        d[key] = json.loads(raw) if raw else None
    for k in ("points_ok", "points_failed", "points_skipped"):
        d[k] = int(d.get(k) or 0)
    return d


def _point_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["extra"] = json.loads(d.pop("extra_json") or "{}")
    if d.get("noisy") is not None:
        d["noisy"] = bool(d["noisy"])
    return d


# -- validation of exported files ------------------------------------------------------
_ENUMS = {
    "variant": VARIANTS,
    "impl": IMPLS,
    "mode": MODES,
    "dtype": DTYPES,
    "status": POINT_STATUSES,
    "timing_method": TIMING_METHODS,
}


def _check_type(where: str, value: Any, typ: type, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise StoreError(f"{where} is missing or null: the file is not a complete NormScope export")
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is bool:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise StoreError(
            f"{where} should be {typ.__name__}, got {type(value).__name__}: the file is not a valid export"
        )


def validate_export(doc: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise StoreError(f'not a NormScope run export (expected "format": "{EXPORT_FORMAT}")')
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError("export has no valid schema_version")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"export has schema v{version}, newer than this NormScope's v{SCHEMA_VERSION}: upgrade NormScope"
        )
    run = doc.get("run")
    points = doc.get("points")
    if not isinstance(run, dict) or not isinstance(points, list):
        raise StoreError('export lacks a "run" object or a "points" list')
    unknown = set(run) - set(_EXPORT_RUN_FIELDS)
    if unknown:
        raise StoreError(f"run has unknown field(s) {', '.join(sorted(unknown))}")
    for name, typ, optional in (
        ("uid", str, False),
        ("status", str, False),
        ("label", str, True),
        ("created_at", str, False),
        ("finished_at", str, True),
        ("spec", dict, False),
        ("machine", dict, False),
        ("versions", dict, False),
        ("copy_gbps", float, True),
        ("idle_power_w", float, True),
        ("points_planned", int, True),
        ("error", str, True),
        ("series", dict, True),
        ("sensors", dict, True),
    ):
        _check_type(f"run.{name}", run.get(name), typ, optional)
    if run["status"] not in RUN_STATUSES:
        raise StoreError(f"run.status {run['status']!r} is not one of {', '.join(RUN_STATUSES)}")
    try:
        SweepSpec.from_dict(run["spec"])
    except (SpecError, TypeError) as e:
        raise StoreError(f"run.spec is invalid: {e}") from None
    allowed = {"seq", "extra", *POINT_COLUMNS}
    for i, p in enumerate(points):
        where = f"points[{i}]"
        if not isinstance(p, dict):
            raise StoreError(f"{where} is not an object")
        unknown = set(p) - allowed
        if unknown:
            raise StoreError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
        _check_type(f"{where}.seq", p.get("seq"), int, False)
        for name, typ in POINT_COLUMNS.items():
            _check_type(f"{where}.{name}", p.get(name), typ, name not in _REQUIRED_POINT)
        for name, allowed_values in _ENUMS.items():
            if p.get(name) is not None and p[name] not in allowed_values:
                raise StoreError(f"{where}.{name} {p[name]!r} is not one of {', '.join(allowed_values)}")
        if p.get("extra") is not None and not isinstance(p["extra"], dict):
            raise StoreError(f"{where}.extra should be an object")
        if p["tokens"] < 1 or p["hidden"] < 1:
            raise StoreError(f"{where} has a non-positive shape")
    return run, points


def load_export_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"no such file {path}: check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(
            f"{path} is not JSON ({e.msg} at line {e.lineno}): export a run with `python -m profilers export`"
        ) from None
