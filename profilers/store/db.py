"""SQLite store: runs with provenance, points committed one by one (reads and writes).

Crash safety comes from SQLite itself (WAL journal, one commit per point): a
process killed mid-sweep leaves every finished point readable. A run whose
process died while "running" is marked "interrupted" the next time a store is
opened on the same host. Older stores are migrated (``schema.py``), newer ones
refused; moving runs between machines is ``exchange.py``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .. import registry
from .records import PointResult
from .schema import MIGRATIONS, POINT_COLUMNS, RUN_STATUSES, SCHEMA_VERSION

DEFAULT_DB = Path(__file__).resolve().parent.parent.parent / "data" / "results.db"


class RunSpec(Protocol):
    """What a run's spec offers the store: JSON, and the label it may carry."""

    label: str | None

    def to_json(self) -> str: ...


class StoreError(ValueError):
    """A store or file problem the user can fix; the message names the fix."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_db_path() -> Path:
    env = os.environ.get("NORMSCOPE_DB")
    return Path(env) if env else DEFAULT_DB


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
        spec: RunSpec,
        machine: dict[str, Any],
        versions: dict[str, Any],
        points_planned: int,
        label: str | None = None,
        kind: str = "kernels",
    ) -> int:
        """A new run in status running, owned by this process. ``spec`` is the run's declarative spec
        (a SweepSpec, or a lab's spec): anything with ``to_json()`` and a ``label``."""
        if kind not in registry.kinds():
            raise ValueError(f"unknown run kind {kind!r}")
        pid = os.getpid()
        with self.con:
            cur = self.con.execute(
                """INSERT INTO runs (uid, status, label, created_at, spec_json, machine_json, versions_json,
                   points_planned, host, pid, pid_started, kind) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    uuid.uuid4().hex,
                    "running",
                    label if label is not None else getattr(spec, "label", None),
                    now_iso(),
                    spec.to_json(),
                    json.dumps(machine, sort_keys=True),
                    json.dumps(versions, sort_keys=True),
                    points_planned,
                    socket.gethostname(),
                    pid,
                    _process_start(pid),
                    kind,
                ),
            )
        return int(cur.lastrowid)

    def update_run(self, run_id: int, **fields: Any) -> None:
        allowed = {"copy_gbps", "idle_power_w", "label", "error", "series", "sensors", "extra", "points_planned"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {bad}")
        for key in ("series", "sensors", "extra"):
            if key in fields:
                fields[f"{key}_json"] = json.dumps(fields.pop(key), sort_keys=True)
        sets = ", ".join(f"{k}=?" for k in fields)
        with self.con:
            self.con.execute(f"UPDATE runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def add_point(self, run_id: int, seq: int, result: PointResult) -> None:
        d = result.to_dict()
        d["seq"] = seq
        with self.con:
            self._insert_points(run_id, [d])

    def _insert_points(self, run_id: int, points: Iterable[dict[str, Any]]) -> None:
        """The one INSERT of points (the caller holds the transaction); non-finite floats become NULL."""
        cols = list(POINT_COLUMNS)
        self.con.executemany(
            f"INSERT INTO points (run_id, seq, {', '.join(cols)}, extra_json, created_at) "
            f"VALUES (?, ?, {', '.join('?' * len(cols))}, ?, ?)",
            [
                (
                    run_id,
                    p["seq"],
                    *[_clean(p.get(c)) for c in cols],
                    json.dumps(p.get("extra") or {}, sort_keys=True),
                    now_iso(),
                )
                for p in points
            ],
        )

    def insert_imported(
        self,
        run: dict[str, Any],
        points: list[dict[str, Any]],
        source: str,
        artifacts: dict[str, Any] | None = None,
    ) -> int:
        """A validated run from elsewhere, in one transaction (see ``exchange.import_run``)."""
        cols = {
            "uid": run["uid"],
            "status": "interrupted" if run["status"] == "running" else run["status"],
            "label": run.get("label"),
            "created_at": run["created_at"],
            **_measured_columns(run, run["points_planned"] if run.get("points_planned") is not None else len(points)),
            "finished_at": run.get("finished_at"),
            "source": source,
            "kind": run.get("kind") or "kernels",
        }
        with self.con:
            cur = self.con.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(cols.values())
            )
            run_id = int(cur.lastrowid)
            self._insert_points(run_id, points)
            for name, doc in (artifacts or {}).items():
                self.con.execute(
                    "INSERT INTO artifacts (run_id, name, json, created_at) VALUES (?,?,?,?)",
                    (run_id, name, json.dumps(doc, sort_keys=True), now_iso()),
                )
        return run_id

    def fill_run(self, run_id: int, run: dict[str, Any], points: list[dict[str, Any]]) -> None:
        """A running run of this process completed from ``run`` (an export's run) and its ``points``, in one
        transaction: what a run measured elsewhere (its processes) writes into the row the user followed."""
        cols = {
            **_measured_columns(run, len(points)),
            "status": "completed",
            "finished_at": run.get("finished_at") or now_iso(),
        }
        with self.con:
            self.con.execute(
                f"UPDATE runs SET {', '.join(f'{k}=?' for k in cols)} WHERE id=? AND status='running'",
                (*cols.values(), run_id),
            )
            if self.con.execute("SELECT changes()").fetchone()[0] != 1:
                raise StoreError(f"run {run_id} is not running any more: its results were not written")
            self._insert_points(run_id, points)

    # -- artifacts: a lab's results as named JSON documents on its run ----------------------
    def put_artifact(self, run_id: int, name: str, doc: Any) -> None:
        """Store (or replace) one named JSON document on a run; committed before returning."""
        text = json.dumps(doc, sort_keys=True, allow_nan=False)
        with self.con:
            self.con.execute(
                "INSERT INTO artifacts (run_id, name, json, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT(run_id, name) DO UPDATE SET json=excluded.json, created_at=excluded.created_at",
                (run_id, name, text, now_iso()),
            )

    def artifact(self, run_id: int, name: str) -> Any:
        """One named document, or None when the run has none by that name."""
        row = self.con.execute("SELECT json FROM artifacts WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        return json.loads(row["json"]) if row else None

    def artifacts(self, run_id: int, prefix: str = "") -> dict[str, Any]:
        """Every document of a run whose name starts with ``prefix``, by name, in insertion order."""
        rows = self.con.execute(
            "SELECT name, json FROM artifacts WHERE run_id=? AND substr(name, 1, ?)=? ORDER BY id",
            (run_id, len(prefix), prefix),
        )
        return {r["name"]: json.loads(r["json"]) for r in rows}

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
            self.con.execute("DELETE FROM artifacts WHERE run_id=?", (run_id,))
            self.con.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # -- reading ---------------------------------------------------------------------
    def _runs_with_counts(self, columns: str, where: str = "", params: tuple = ()) -> list[sqlite3.Row]:
        """Runs with their point counts by status: the one query behind the run list and a single run."""
        return self.con.execute(
            f"""SELECT {columns}, COUNT(p.id) AS points_done, SUM(p.status='ok') AS points_ok,
                      SUM(p.status IN ('imprecise', 'unstable')) AS points_flagged,
                      SUM(p.status='failed') AS points_failed, SUM(p.status='skipped') AS points_skipped
               FROM runs r LEFT JOIN points p ON p.run_id = r.id {where} GROUP BY r.id ORDER BY r.id DESC""",
            params,
        ).fetchall()

    def list_runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every run (of one kind, when given), newest first, without the possibly large telemetry series."""
        cols = ", ".join("r." + c for c in _RUN_LIST_COLUMNS)
        if kind is None:
            return [_run_dict(r) for r in self._runs_with_counts(cols)]
        return [_run_dict(r) for r in self._runs_with_counts(cols, "WHERE r.kind=?", (kind,))]

    def get_run(self, run_id: int) -> dict[str, Any]:
        rows = self._runs_with_counts("r.*", "WHERE r.id=?", (run_id,))
        row = rows[0] if rows else None
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
    "kind",
    "extra_json",
)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _measured_columns(run: dict[str, Any], points_planned: int) -> dict[str, Any]:
    """The columns of a run that say what it measured and how, from an export's run (JSON fields as text)."""

    def opt(key: str) -> str | None:
        return json.dumps(run[key]) if run.get(key) is not None else None

    return {
        "spec_json": json.dumps(run["spec"], sort_keys=True),
        "machine_json": json.dumps(run["machine"], sort_keys=True),
        "versions_json": json.dumps(run["versions"], sort_keys=True),
        "copy_gbps": run.get("copy_gbps"),
        "idle_power_w": run.get("idle_power_w"),
        "points_planned": points_planned,
        "error": run.get("error"),
        "series_json": opt("series"),
        "sensors_json": opt("sensors"),
        "extra_json": opt("extra"),
    }


def _run_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["spec"] = json.loads(d.pop("spec_json"))
    d["machine"] = json.loads(d.pop("machine_json"))
    d["versions"] = json.loads(d.pop("versions_json"))
    for key in ("series", "sensors", "extra"):
        raw = d.pop(f"{key}_json", None)
        d[key] = json.loads(raw) if raw else None
    for k in ("points_ok", "points_flagged", "points_failed", "points_skipped"):
        d[k] = int(d.get(k) or 0)
    return d


def _point_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["extra"] = json.loads(d.pop("extra_json") or "{}")
    if d.get("noisy") is not None:
        d["noisy"] = bool(d["noisy"])
    return d
