"""Moving every run from one store to another (SQLite → PostgreSQL and back), nothing lost.

Each run is copied in one transaction with its points and artifacts, every column as stored (status, source,
provenance, telemetry), and checked after: the destination's counts must equal the source's or the run's
copy is undone. A run keeps its id when the destination has that id free, else it gets the next one and the
copy says so (a mapping old → new). A run already in the destination (same uid) is left as it is; a run
still measuring is not copied until it ends. Device leases are this moment's state of the source and stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from .backend import SQLITE
from .db import Store, StoreError, _insert_returning_id


@dataclass
class CopyReport:
    copied: list[int] = field(default_factory=list)
    renumbered: dict[int, int] = field(default_factory=dict)  # source id → destination id
    present: dict[int, int] = field(default_factory=dict)  # source id → the destination's run of that uid
    running: list[int] = field(default_factory=list)
    points: int = 0
    artifacts: int = 0

    def summary(self, src: str, dst: str) -> str:
        parts = [
            f"copied {len(self.copied)} run{'s' if len(self.copied) != 1 else ''} ({self.points} points, "
            f"{self.artifacts} artifacts) from {src} to {dst}"
        ]
        if self.copied and not self.renumbered:
            parts.append("every run kept its id")
        if self.renumbered:
            parts.append("new ids: " + ", ".join(f"run {a} → {b}" for a, b in self.renumbered.items()))
        if self.present:
            parts.append(
                f"{len(self.present)} already there ("
                + ", ".join(f"run {a} as {b}" for a, b in list(self.present.items())[:8])
                + (", …" if len(self.present) > 8 else "")
                + ")"
            )
        if self.running:
            parts.append(f"not copied while still running: {', '.join(map(str, self.running))} (copy again later)")
        return "; ".join(parts)


def _rows(c: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in c.execute(text(sql), params).mappings()]


def _insert(c: Connection, table: str, row: dict[str, Any]) -> None:
    names = list(row)
    c.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"), row)


def copy_runs(src: Store, dst: Store) -> CopyReport:
    """Every run of ``src`` that ``dst`` lacks, in id order; see the module's docstring."""
    if src.location == dst.location:
        raise StoreError(f"source and destination are the same store ({src.where}): name another destination")
    report = CopyReport()
    with src._read() as c:
        runs = _rows(c, "SELECT * FROM runs ORDER BY id")
    for run in runs:
        old = int(run["id"])
        if run["status"] == "running":
            report.running.append(old)
            continue
        existing = dst.run_id_of_uid(run["uid"])
        if existing is not None:
            report.present[old] = existing
            continue
        with src._read() as c:
            points = _rows(c, "SELECT * FROM points WHERE run_id=:r ORDER BY id", r=old)
            artifacts = _rows(c, "SELECT * FROM artifacts WHERE run_id=:r ORDER BY id", r=old)
        with dst._write() as c:
            taken = c.execute(text("SELECT COUNT(*) FROM runs WHERE id=:id"), {"id": old}).scalar_one()
            row = dict(run)
            if taken:
                row.pop("id")
                new = report.renumbered[old] = _insert_returning_id(c, "runs", row)
            else:
                _insert(c, "runs", row)
                new = old
            for table, children in (("points", points), ("artifacts", artifacts)):
                for child in children:
                    _insert(c, table, {**{k: v for k, v in child.items() if k != "id"}, "run_id": new})
            counts = [
                c.execute(text(f"SELECT COUNT(*) FROM {t} WHERE run_id=:r"), {"r": new}).scalar_one()
                for t in ("points", "artifacts")
            ]
            if counts != [len(points), len(artifacts)]:  # raising rolls the run's copy back
                raise StoreError(
                    f"run {old}'s copy holds {counts[0]} points and {counts[1]} artifacts, not "
                    f"{len(points)} and {len(artifacts)}: nothing of it was kept"
                )
        report.copied.append(old)
        report.points += len(points)
        report.artifacts += len(artifacts)
    if dst.dialect is not SQLITE and report.copied:  # explicit ids leave the id sequences behind
        with dst._write() as c:
            for table in ("runs", "points", "artifacts"):
                c.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST((SELECT MAX(id) FROM {table}), 1))"
                )
    return report
