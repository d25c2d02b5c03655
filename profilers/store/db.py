"""The store: runs with provenance, points committed one by one (reads and writes), on SQLite or PostgreSQL.

Crash safety comes from the database (one transaction per point; SQLite in WAL mode): a process killed
mid-sweep leaves every finished point readable. A run whose process died while "running" is marked
"interrupted" the next time a store is opened on the same host. A SQLite file is created and migrated when
opened; a PostgreSQL database is shared, so it is created and upgraded only by ``migrate`` (``profilers store
migrate URL``), and a store of a newer schema is refused either way. The SQL is written once for both back
ends (SQLAlchemy Core text with named parameters); what differs lives in ``backend.Dialect``. Moving runs
between machines is ``exchange.py``; between stores, ``copy.py``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, exc, text

from .. import registry
from .backend import DEFAULT_DB, SQLITE, Location, StoreError, explain, locate, open_engine
from .records import PointResult
from .schema import MIGRATIONS, POINT_COLUMNS, RUN_RECORD_VERSION, RUN_STATUSES, SCHEMA_VERSION

__all__ = ["DEFAULT_DB", "Store", "StoreError", "default_db_path", "now_iso"]


class RunSpec(Protocol):
    """What a run's spec offers the store: JSON, and the label it may carry."""

    label: str | None

    def to_json(self) -> str: ...


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_db_path() -> str:
    """The store a command or page uses when none is named: ``$NORMSCOPE_DB`` (a path or a URL) or the file
    data/results.db."""
    return os.environ.get("NORMSCOPE_DB") or str(DEFAULT_DB)


def process_start(pid: int) -> float | None:
    """Start time of a live process; None when it is gone (or a zombie awaiting its parent)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except Exception:  # no such process, or no permission
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether process ``pid`` of this host still runs (and is the one that started at ``started``)."""
    if not pid:
        return False
    actual = process_start(pid)
    if actual is None:
        return False
    return started is None or abs(actual - started) < 1.0


class Store:
    """One store (a SQLite file or a PostgreSQL database). Every write commits before returning.

    ``where`` is any of: a file path, a ``postgresql://`` URL, a ``Location``, or None for the default.
    ``migrate`` lets a database be created or upgraded on opening (a file always may be).
    """

    def __init__(
        self,
        where: str | os.PathLike[str] | Location | None = None,
        readonly: bool = False,
        migrate: bool = False,
    ) -> None:
        self.location = locate(where)
        self.readonly = readonly
        self._can_write: bool | None = None
        self.dialect = self.location.dialect
        loc = self.location
        if loc.is_file:
            path = Path(loc.target)
            if readonly and not path.exists():
                raise StoreError(f"no store at {path}: run a sweep first or pass --db PATH")
            if not readonly:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(f"cannot open store {path}: {e}; pass --db PATH to a writable file") from None
        self.engine = open_engine(loc, readonly)
        try:
            with self._read() as c:
                current = self._version(c)
            self._check_version(current, creating=loc.is_file or migrate)
            if current < SCHEMA_VERSION and not readonly:
                self.migrate()
            if self.can_write:
                self.mark_interrupted()
        except exc.DBAPIError as e:
            self.engine.dispose()
            raise StoreError(explain(e, loc)) from None
        except BaseException:
            self.engine.dispose()
            raise

    # -- lifecycle -------------------------------------------------------------------
    @property
    def where(self) -> str:
        """The store as messages and pages name it (a path, or a URL without its password)."""
        return self.location.display

    @property
    def can_write(self) -> bool:
        """Whether this store may be changed by this process: opened writable, and the file writable or the
        database role allowed to insert (a viewer's read-only role is not). Asked once per Store."""
        if self._can_write is None:
            if self.readonly:
                self._can_write = False
            elif self.location.is_file:
                self._can_write = os.access(self.location.target, os.W_OK)
            else:
                with self._read() as c:
                    ro = c.exec_driver_sql("SHOW transaction_read_only").scalar_one() == "on"
                    may = c.exec_driver_sql(
                        "SELECT has_table_privilege('runs', 'INSERT') AND has_table_privilege('points', 'INSERT')"
                    ).scalar_one()
                self._can_write = bool(may) and not ro
        return self._can_write

    @property
    def local_dir(self) -> Path:
        """This machine's folder for the store's side files (traces, job files)."""
        return self.location.local_dir

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads: its transaction ends (rolled back) when the block does."""
        try:
            with self.engine.connect() as c:
                yield c
        except exc.OperationalError as e:
            raise StoreError(explain(e, self.location)) from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back on an error."""
        if self.readonly:
            raise StoreError(f"store {self.where} is open read-only: this view cannot change it")
        try:
            with self.engine.connect() as c:
                c.execution_options(writing=True)
                with c.begin():
                    yield c
        except exc.OperationalError as e:
            raise StoreError(explain(e, self.location)) from None
        except exc.DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) in _REFUSED_WRITE:
                raise StoreError(explain(e, self.location)) from None
            raise

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of one read-only SQL statement with named parameters (``:name``), as dicts."""
        with self._read() as c:
            return [dict(r) for r in c.execute(text(sql), params).mappings()]

    def execute(self, sql: str, **params: Any) -> int:
        """One writing SQL statement with named parameters, in its own transaction; the rows it changed."""
        with self._write() as c:
            return int(c.execute(text(sql), params).rowcount)

    @property
    def schema_version(self) -> int:
        with self._read() as c:
            return self._version(c)

    def _version(self, c: Connection) -> int:
        if self.dialect is SQLITE:
            return int(c.exec_driver_sql("PRAGMA user_version").scalar_one())
        if c.exec_driver_sql("SELECT to_regclass('normscope_schema')").scalar_one() is None:
            return 0
        return int(c.exec_driver_sql("SELECT version FROM normscope_schema").scalar_one())

    def _set_version(self, c: Connection, version: int) -> None:
        if self.dialect is SQLITE:
            c.exec_driver_sql(f"PRAGMA user_version={int(version)}")
        else:
            c.exec_driver_sql("UPDATE normscope_schema SET version=%(v)s", {"v": version})

    def _check_version(self, current: int, creating: bool) -> None:
        where = self.where
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {where} has schema v{current}, newer than NormScope's v{SCHEMA_VERSION}: upgrade NormScope"
            )
        if current == SCHEMA_VERSION or (self.readonly and current >= RUN_RECORD_VERSION):
            return
        if self.readonly:
            raise StoreError(
                f"store {where} has schema v{current} and needs upgrading to v{SCHEMA_VERSION}: run "
                "`python -m profilers store migrate` on it once"
            )
        if not creating:
            what = "has no NormScope tables" if current == 0 else f"has schema v{current}"
            raise StoreError(
                f"database {where} {what}: run `python -m profilers store migrate URL` once to "
                + ("create them" if current == 0 else f"upgrade it to v{SCHEMA_VERSION}")
            )

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema to this NormScope's; returns (from, to). Each version is one
        transaction; on PostgreSQL an advisory lock keeps two migrating clients from racing."""
        with self._write() as c:
            if self.dialect is not SQLITE:
                c.exec_driver_sql("SELECT pg_advisory_xact_lock(7726771)")
                c.exec_driver_sql("CREATE TABLE IF NOT EXISTS normscope_schema (version INTEGER NOT NULL)")
                if c.exec_driver_sql("SELECT COUNT(*) FROM normscope_schema").scalar_one() == 0:
                    c.exec_driver_sql("INSERT INTO normscope_schema (version) VALUES (0)")
            start = self._version(c)
        if start > SCHEMA_VERSION:
            self._check_version(start, creating=True)
        for version in range(start + 1, SCHEMA_VERSION + 1):
            with self._write() as c:
                if self.dialect is not SQLITE:
                    c.exec_driver_sql("SELECT pg_advisory_xact_lock(7726771)")
                    if self._version(c) >= version:  # another client got there first
                        continue
                MIGRATIONS[version](c, self.dialect)
                self._set_version(c, version)
        return start, SCHEMA_VERSION

    def mark_interrupted(self) -> list[int]:
        """Runs left 'running' by a dead process on this host become 'interrupted'."""
        host = socket.gethostname()
        rows = self.query("SELECT id, host, pid, pid_started FROM runs WHERE status='running' AND host=:h", h=host)
        dead = [r["id"] for r in rows if not process_alive(r["pid"], r["pid_started"])]
        if dead:
            with self._write() as c:
                c.execute(
                    text(
                        "UPDATE runs SET status='interrupted', finished_at=:t, error=:e "
                        "WHERE id=:id AND status='running'"
                    ),
                    [
                        {"t": now_iso(), "e": "the measuring process ended without finishing the run", "id": i}
                        for i in dead
                    ],
                )
        return dead

    def run_of_pid(self, pid: int) -> int | None:
        """The newest run created by process ``pid`` on this host, or None."""
        rows = self.query(
            "SELECT id FROM runs WHERE pid=:pid AND host=:h ORDER BY id DESC LIMIT 1", pid=pid, h=socket.gethostname()
        )
        return int(rows[0]["id"]) if rows else None

    def run_id_of_uid(self, uid: str) -> int | None:
        rows = self.query("SELECT id FROM runs WHERE uid=:uid", uid=uid)
        return int(rows[0]["id"]) if rows else None

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
        cols = {
            "uid": uuid.uuid4().hex,
            "status": "running",
            "label": label if label is not None else getattr(spec, "label", None),
            "created_at": now_iso(),
            "spec_json": spec.to_json(),
            "machine_json": json.dumps(machine, sort_keys=True),
            "versions_json": json.dumps(versions, sort_keys=True),
            "points_planned": points_planned,
            "host": socket.gethostname(),
            "pid": pid,
            "pid_started": process_start(pid),
            "kind": kind,
        }
        with self._write() as c:
            return _insert_returning_id(c, "runs", cols)

    def update_run(self, run_id: int, **fields: Any) -> None:
        allowed = {"copy_gbps", "idle_power_w", "label", "error", "series", "sensors", "extra", "points_planned"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {bad}")
        for key in ("series", "sensors", "extra"):
            if key in fields:
                fields[f"{key}_json"] = json.dumps(fields.pop(key), sort_keys=True)
        sets = ", ".join(f"{k}=:{k}" for k in fields)
        with self._write() as c:
            c.execute(text(f"UPDATE runs SET {sets} WHERE id=:run_id"), {**fields, "run_id": run_id})

    def add_point(self, run_id: int, seq: int, result: PointResult) -> None:
        self.add_points(run_id, [(seq, result)])

    def add_points(self, run_id: int, results: Iterable[tuple[int, PointResult]]) -> None:
        """Points with their sequence numbers in one transaction: all of them are stored, or none."""
        docs = [{**r.to_dict(), "seq": seq} for seq, r in results]
        with self._write() as c:
            _insert_points(c, run_id, docs)

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
        with self._write() as c:
            run_id = _insert_returning_id(c, "runs", cols)
            _insert_points(c, run_id, points)
            _insert_artifacts(
                c, run_id, [(name, json.dumps(doc, sort_keys=True)) for name, doc in (artifacts or {}).items()]
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
        with self._write() as c:
            res = c.execute(
                text(f"UPDATE runs SET {', '.join(f'{k}=:{k}' for k in cols)} WHERE id=:run_id AND status='running'"),
                {**cols, "run_id": run_id},
            )
            if res.rowcount != 1:
                raise StoreError(f"run {run_id} is not running any more: its results were not written")
            _insert_points(c, run_id, points)

    # -- artifacts: a lab's results as named JSON documents on its run ----------------------
    def put_artifact(self, run_id: int, name: str, doc: Any) -> None:
        """Store (or replace) one named JSON document on a run; committed before returning."""
        body = json.dumps(doc, sort_keys=True, allow_nan=False)
        with self._write() as c:
            c.execute(
                text(
                    "INSERT INTO artifacts (run_id, name, json, created_at) VALUES (:r, :n, :j, :t) "
                    "ON CONFLICT(run_id, name) DO UPDATE SET json=excluded.json, created_at=excluded.created_at"
                ),
                {"r": run_id, "n": name, "j": body, "t": now_iso()},
            )

    def artifact(self, run_id: int, name: str) -> Any:
        """One named document, or None when the run has none by that name."""
        rows = self.query("SELECT json FROM artifacts WHERE run_id=:r AND name=:n", r=run_id, n=name)
        return json.loads(rows[0]["json"]) if rows else None

    def artifacts(self, run_id: int, prefix: str = "") -> dict[str, Any]:
        """Every document of a run whose name starts with ``prefix``, by name, in insertion order."""
        rows = self.query("SELECT name, json FROM artifacts WHERE run_id=:r ORDER BY id", r=run_id)
        return {r["name"]: json.loads(r["json"]) for r in rows if r["name"].startswith(prefix)}

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(status)
        with self._write() as c:
            c.execute(
                text("UPDATE runs SET status=:s, finished_at=:t, error=COALESCE(:e, error) WHERE id=:id"),
                {"s": status, "t": now_iso(), "e": error, "id": run_id},
            )

    def set_label(self, run_id: int, label: str | None) -> None:
        self.get_run(run_id)
        with self._write() as c:
            c.execute(text("UPDATE runs SET label=:l WHERE id=:id"), {"l": label, "id": run_id})

    def delete_run(self, run_id: int) -> None:
        self.get_run(run_id)
        with self._write() as c:
            for table, key in (("points", "run_id"), ("artifacts", "run_id"), ("runs", "id")):
                c.execute(text(f"DELETE FROM {table} WHERE {key}=:id"), {"id": run_id})

    # -- reading ---------------------------------------------------------------------
    def _runs_with_counts(
        self, columns: str, where: str = "", points_where: str = "", **params: Any
    ) -> list[dict[str, Any]]:
        """Runs with their point counts by status: the one query behind the run list and a single run. The
        points are counted per run before the join (``points_where`` narrows them), so the database groups
        one narrow table instead of every point joined to its run's wide row."""
        return self.query(
            f"""SELECT {columns}, COALESCE(n.done, 0) AS points_done, COALESCE(n.ok, 0) AS points_ok,
                      COALESCE(n.flagged, 0) AS points_flagged, COALESCE(n.failed, 0) AS points_failed,
                      COALESCE(n.skipped, 0) AS points_skipped
               FROM runs r LEFT JOIN (
                   SELECT run_id, COUNT(*) AS done,
                          SUM(CASE WHEN status='ok' THEN 1 ELSE 0 END) AS ok,
                          SUM(CASE WHEN status IN ('imprecise', 'unstable') THEN 1 ELSE 0 END) AS flagged,
                          SUM(CASE WHEN status='failed' THEN 1 ELSE 0 END) AS failed,
                          SUM(CASE WHEN status='skipped' THEN 1 ELSE 0 END) AS skipped
                   FROM points {points_where} GROUP BY run_id
               ) n ON n.run_id = r.id {where} ORDER BY r.id DESC""",
            **params,
        )

    def list_runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every run (of one kind, when given), newest first, without the possibly large telemetry series."""
        cols = ", ".join("r." + c for c in _RUN_LIST_COLUMNS)
        if kind is None:
            return [_run_dict(r) for r in self._runs_with_counts(cols)]
        return [_run_dict(r) for r in self._runs_with_counts(cols, "WHERE r.kind=:kind", kind=kind)]

    def get_run(self, run_id: int) -> dict[str, Any]:
        rows = self._runs_with_counts("r.*", "WHERE r.id=:id", "WHERE run_id=:id", id=run_id)
        if not rows:
            raise StoreError(f"no run {run_id} in {self.where}: list runs with `python -m profilers runs`")
        return _run_dict(rows[0])

    def points(self, run_ids: int | Iterable[int]) -> list[dict[str, Any]]:
        ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
        if not ids:
            return []
        q = text("SELECT * FROM points WHERE run_id IN :ids ORDER BY run_id, seq").bindparams(
            bindparam("ids", expanding=True)
        )
        with self._read() as c:
            return [_point_dict(r) for r in c.execute(q, {"ids": ids}).mappings()]

    def traced_run_ids(self) -> list[int]:
        """Runs holding at least one point with a kernel breakdown, newest first."""
        rows = self.query("SELECT DISTINCT run_id FROM points WHERE kernels_per_call IS NOT NULL ORDER BY run_id DESC")
        return [int(r["run_id"]) for r in rows]

    def points_table(self, run_ids: Iterable[int], with_extra: bool = False) -> Any:
        """Points of several runs as a pandas DataFrame: the fast path for charts and CSV/Parquet.

        ``with_extra`` adds ``extra_json`` (sensor summaries, kernel lists) as a JSON text column.
        """
        import pandas as pd

        ids = list(run_ids)
        names = ["id", "run_id", "seq", *POINT_COLUMNS] + (["extra_json"] if with_extra else [])
        if not ids:
            return pd.DataFrame(columns=names)
        q = text(f"SELECT {', '.join(names)} FROM points WHERE run_id IN :ids ORDER BY run_id, seq").bindparams(
            bindparam("ids", expanding=True)
        )
        with self._read() as c:
            rows = c.execute(q, {"ids": ids}).all()
        df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=names, coerce_float=True)
        df["noisy"] = df["noisy"].map({1: True, 0: False, None: None}).astype(object)
        return df


def _insert_returning_id(c: Connection, table: str, cols: Mapping[str, Any]) -> int:
    names = list(cols)
    q = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) RETURNING id"
    return int(c.execute(text(q), dict(cols)).scalar_one())


def _insert_points(c: Connection, run_id: int, points: Iterable[dict[str, Any]]) -> None:
    """The one INSERT of points (the caller holds the transaction); non-finite floats become NULL."""
    cols = list(POINT_COLUMNS)
    rows = [
        {
            "run_id": run_id,
            "seq": p["seq"],
            **{col: _clean(p.get(col)) for col in cols},
            "extra_json": json.dumps(p.get("extra") or {}, sort_keys=True),
            "created_at": now_iso(),
        }
        for p in points
    ]
    if not rows:
        return
    names = ["run_id", "seq", *cols, "extra_json", "created_at"]
    c.execute(text(f"INSERT INTO points ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"), rows)


def _insert_artifacts(c: Connection, run_id: int, docs: list[tuple[str, str]]) -> None:
    if docs:
        c.execute(
            text("INSERT INTO artifacts (run_id, name, json, created_at) VALUES (:r, :n, :j, :t)"),
            [{"r": run_id, "n": name, "j": body, "t": now_iso()} for name, body in docs],
        )


# PostgreSQL's insufficient_privilege and read_only_sql_transaction: a viewer's role, not a fault
_REFUSED_WRITE = ("42501", "25006")

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
    """A value as both back ends store it: non-finite floats as NULL, booleans as 0/1."""
    if isinstance(v, bool):
        return int(v)
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


def _run_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(r)
    d["spec"] = json.loads(d.pop("spec_json"))
    d["machine"] = json.loads(d.pop("machine_json"))
    d["versions"] = json.loads(d.pop("versions_json"))
    for key in ("series", "sensors", "extra"):
        raw = d.pop(f"{key}_json", None)
        d[key] = json.loads(raw) if raw else None
    for k in ("points_done", "points_ok", "points_flagged", "points_failed", "points_skipped"):
        d[k] = int(d.get(k) or 0)
    return d


def _point_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(r)
    d["extra"] = json.loads(d.pop("extra_json") or "{}")
    if d.get("noisy") is not None:
        d["noisy"] = bool(d["noisy"])
    return d
