"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temporary folder, a Unix socket.

``initdb`` + ``pg_ctl`` in a folder of its own (no TCP port, so it never meets another server on the machine),
password authentication (scram-sha-256) so wrong credentials are a real refusal, and fsync off (a test's
database need not survive a power cut). PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user that Debian's package creates. Stopped and deleted at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "normscope"
PASSWORD = "pw-" + uuid.uuid4().hex[:12]


def find_bin(name: str) -> str | None:
    """A PostgreSQL program on PATH or in Debian's versioned folder (the newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def unavailable() -> str | None:
    """Why no cluster can start here, or None."""
    for name in ("initdb", "pg_ctl"):
        if find_bin(name) is None:
            return f"PostgreSQL's {name} is not installed (Debian package postgresql)"
    if os.geteuid() == 0:
        import pwd

        if shutil.which("runuser") is None:
            return "running as root without runuser: PostgreSQL cannot start as root"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user (Debian's package creates it)"
    return None


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="normscope-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as: list[str] = []
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(pwfile, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            find_bin("initdb"), "-D", str(self.data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}",
            "-E", "UTF8", "--no-sync", "--locale=C",
        )  # fmt: skip
        self.start()

    def _run(self, *argv: str | None, timeout: float = 120) -> None:
        p = subprocess.run([*self._as, *map(str, argv)], capture_output=True, text=True, timeout=timeout, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {p.stderr.strip() or p.stdout.strip()}")

    def start(self) -> None:
        opts = f"-k {self.dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=60"
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str, password: str = PASSWORD, user: str = USER) -> str:
        return f"postgresql://{user}:{password}@/{database}?host={self.dir}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or "t_" + uuid.uuid4().hex[:10]
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, database: str, statement: str) -> None:
        """One statement as the cluster's superuser (roles, grants)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as con:
            con.execute(statement)

    def viewer(self, database: str, password: str = "view-only-pw") -> str:
        """The URL of a role that may only read ``database``'s tables (created once per cluster)."""
        self.sql(
            "postgres",
            f"DO $$ BEGIN CREATE ROLE viewer LOGIN PASSWORD '{password}'; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        self.sql(database, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewer")
        return self.url(database, password=password, user="viewer")

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
