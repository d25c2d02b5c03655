"""Where a store lives and how it is reached: a SQLite file (the embedded default) or a PostgreSQL database.

``locate`` turns what the user passed (``--db``, ``NORMSCOPE_DB``) into a Location; ``open_engine`` opens a
SQLAlchemy engine on it with the back end's settings:

- SQLite: WAL journal, foreign keys, a 30 s busy timeout, and a real ``BEGIN`` for every transaction
  (pysqlite's own implicit transactions leave DDL outside them), so a migration or a point is all or nothing;
  ``BEGIN IMMEDIATE`` for writes.
- PostgreSQL (psycopg 3): a connect timeout, a liveness check before a pooled connection is reused, and
  read-only sessions for a read-only store.

A connection failure becomes one line naming the problem and the fix; a password never appears in it.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.pool import QueuePool

DEFAULT_DB = Path(__file__).resolve().parent.parent.parent / "data" / "results.db"
PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class StoreError(ValueError):
    """A store or file problem the user can fix; the message names the fix."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the back ends in the SQL the store writes."""

    name: str
    integer: str
    real: str
    primary_key: str
    # the database's own clock in seconds since the epoch: one clock for every machine sharing the store
    epoch: str


SQLITE = Dialect(
    "sqlite", "INTEGER", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT", "((julianday('now') - 2440587.5) * 86400.0)"
)
POSTGRESQL = Dialect(
    "postgresql",
    "BIGINT",
    "DOUBLE PRECISION",
    "BIGSERIAL PRIMARY KEY",
    "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
)


@dataclass(frozen=True)
class Location:
    """A store's address: a file path or a PostgreSQL URL (kept with its password; never shown)."""

    dialect: Dialect
    target: str

    @property
    def is_file(self) -> bool:
        return self.dialect is SQLITE

    @property
    def path(self) -> Path | None:
        return Path(self.target) if self.is_file else None

    @property
    def display(self) -> str:
        """What messages and pages show: the path, or the URL with its password masked."""
        if self.is_file:
            return self.target
        url = make_url(self.target)
        auth = (url.username or "") + (":***" if url.password else "")
        netloc = (auth + "@" if auth else "") + (url.host or "") + (f":{url.port}" if url.port else "")
        query = "&".join(f"{k}={v}" for k, v in url.query.items())
        return f"postgresql://{netloc}/{url.database}" + (f"?{query}" if query else "")

    @property
    def local_dir(self) -> Path:
        """Where this machine keeps the store's files beside it (traces, dashboard job files): the file's
        folder, or for a database ``$NORMSCOPE_HOME`` (default: the data folder)."""
        if self.is_file:
            return Path(self.target).parent
        home = os.environ.get("NORMSCOPE_HOME")
        return Path(home) if home else DEFAULT_DB.parent

    def __str__(self) -> str:
        return self.display


def locate(value: str | os.PathLike[str] | Location | None = None) -> Location:
    """The store a user named: a file path or a ``postgresql://`` URL; None means ``$NORMSCOPE_DB`` or the
    default file."""
    if isinstance(value, Location):
        return value
    if value is None:
        value = os.environ.get("NORMSCOPE_DB") or DEFAULT_DB
    text = os.fspath(value)
    if "://" not in text:
        return Location(SQLITE, text)
    scheme = text.split("://", 1)[0].lower()
    if scheme not in PG_SCHEMES:
        raise StoreError(
            f"unknown store URL scheme {scheme!r}: pass a file path or a postgresql://user@host/database URL"
        )
    try:
        url = make_url(text).set(drivername="postgresql+psycopg")
    except exc.ArgumentError as e:
        raise StoreError(f"cannot read the store URL ({e}): write it as postgresql://user:password@host/db") from None
    if not url.database:
        raise StoreError("the store URL names no database: write it as postgresql://user@host/DATABASE")
    return Location(POSTGRESQL, url.render_as_string(hide_password=False))


def open_engine(loc: Location, readonly: bool) -> Engine:
    """An engine on ``loc``; nothing is connected yet."""
    if loc.is_file:
        return _sqlite_engine(Path(loc.target), readonly)
    args: dict[str, Any] = {"connect_timeout": 10, "application_name": "normscope"}
    if readonly:
        args["options"] = "-c default_transaction_read_only=on"
    return create_engine(loc.target, connect_args=args, pool_pre_ping=True, pool_size=2, max_overflow=6)


def _sqlite_engine(path: Path, readonly: bool) -> Engine:
    if readonly:

        def creator() -> sqlite3.Connection:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:

        def creator() -> sqlite3.Connection:
            return sqlite3.connect(path, timeout=30, check_same_thread=False)

    engine = create_engine("sqlite://", creator=creator, poolclass=QueuePool, pool_size=2, max_overflow=6)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_con: sqlite3.Connection, _record: Any) -> None:
        dbapi_con.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's implicit one
        dbapi_con.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            dbapi_con.execute("PRAGMA journal_mode=WAL")
            dbapi_con.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # a write takes the write lock at BEGIN, so it waits its turn (busy timeout) instead of failing when
        # a read inside it would have to upgrade to a write while another writer holds the lock
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writing") else "BEGIN")

    return engine


def explain(e: BaseException, loc: Location) -> str:
    """One line for a failure to reach or use the store, naming the fix; never the password."""
    orig = getattr(e, "orig", None) or e
    msg = " ".join(str(orig).split()) or type(orig).__name__
    secret = make_url(loc.target).password if not loc.is_file else None
    if secret and len(str(secret)) >= 4:  # servers do not echo passwords; this is a second guard
        msg = msg.replace(str(secret), "***")
    if "FATAL:" in msg:  # libpq's "connection to server on socket ... failed: FATAL: <the reason>"
        msg = msg.rsplit("FATAL:", 1)[1].strip()
    low = msg.lower()
    where = loc.display
    if loc.is_file:
        if "not a database" in low or "malformed" in low:
            return f"{where} is not a NormScope store ({msg}): pass --db PATH to another file"
        if "unable to open" in low:
            return f"cannot open store {where} ({msg}): pass --db PATH to a writable file"
        if "locked" in low or "busy" in low:
            return f"store {where} stayed locked by another writer for 30 s ({msg}): retry when it has finished"
        if "readonly" in low or "read-only" in low:
            return f"store {where} cannot be written ({msg}): pass --db PATH to a writable file"
        return f"store {where}: {msg}"
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return f"PostgreSQL at {where} refused the credentials ({_short(msg)}): fix the user or password in the URL"
    if "does not exist" in low and "database" in low:
        return (
            f"PostgreSQL at {where}: {_short(msg)}: create it (createdb) and run "
            "`python -m profilers store migrate URL`"
        )
    if any(k in low for k in ("connection refused", "could not connect", "no such file", "timeout", "translate host")):
        return f"cannot reach PostgreSQL at {where} ({_short(msg)}): start the server or fix the host and port"
    if "read-only transaction" in low or "permission denied" in low:
        return f"PostgreSQL at {where} refused a write ({_short(msg)}): this role may only read the store"
    return f"PostgreSQL at {where}: {_short(msg)}"


def _short(msg: str, limit: int = 240) -> str:
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"
