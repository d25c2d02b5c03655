"""One sweep per device, across every process and machine sharing a store: device leases.

Two sweeps on one device would time each other. A lease is a row in the store's ``leases`` table, keyed by
the device's identity: the GPU's UUID for a CUDA device (the same on every host that sees it), the host and
the process's CPU set for the CPU (two CPU sets of one host that overlap are one device). The holder renews
it from a heartbeat thread; a lease whose heartbeat stopped lapses ``ttl_s`` after its last renewal (the
database's clock, one clock for every machine), and a lease of a process on this host that is gone is taken
over at once. Taking a lease is one transaction that first locks the table, so two processes racing for one
device cannot both win. Leases are per store: two stores on one machine do not see each other's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from .backend import SQLITE, StoreError
from .db import Store, process_alive, process_start

DEFAULT_TTL_S = 60.0


class DeviceBusy(StoreError):
    """The device is leased by another live process; the message says who and what to do."""


@dataclass(frozen=True)
class Device:
    """A device's identity in the lease table."""

    name: str  # as the user names it: cpu, cuda:0
    host: str
    device_type: str
    key: str
    cpus: frozenset[int] | None = None


@dataclass
class Lease:
    device: Device
    holder: str
    ttl_s: float


def ttl_s() -> float:
    """The lease's lifetime without a heartbeat: ``$NORMSCOPE_LEASE_TTL_S`` or 60 s."""
    raw = os.environ.get("NORMSCOPE_LEASE_TTL_S")
    try:
        value = float(raw) if raw else DEFAULT_TTL_S
    except ValueError:
        raise StoreError(f"NORMSCOPE_LEASE_TTL_S={raw!r} is not a number of seconds: unset it or give 60") from None
    if not 1.0 <= value <= 3600.0:
        raise StoreError(f"NORMSCOPE_LEASE_TTL_S={raw} is outside 1-3600 s: unset it or give e.g. 60")
    return value


def cpu_ranges(cpus: frozenset[int]) -> str:
    """0,1,2,5 → '0-2,5'."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_cpus(ranges: str | None) -> frozenset[int]:
    cpus: set[int] = set()
    for part in (ranges or "").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return frozenset(cpus)


def identify(device: str) -> Device:
    """The identity of ``device`` (cpu, cuda:N) as this process sees it."""
    host = socket.gethostname()
    if device == "cpu":
        cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        return Device("cpu", host, "cpu", f"{host}/cpu/{cpu_ranges(cpus)}", cpus)
    uid = None
    if device.startswith("cuda"):
        with contextlib.suppress(Exception):  # no torch, no CUDA: the index names it on this host
            from ..sensors.nvml import normalize_uuid, torch_uuid

            index = int(device.split(":", 1)[1]) if ":" in device else 0
            raw = torch_uuid(index)
            uid = normalize_uuid(raw) if raw else None
    # a GPU's UUID names it on every host (containers of one machine share GPUs under different host names)
    return Device(device, host, device.split(":", 1)[0], f"gpu/{uid}" if uid else f"{host}/{device}")


def _lock_table(c: Connection, store: Store) -> None:
    """Serialize lease takers: SQLite's write transactions already begin IMMEDIATE (``Store._write``)."""
    if store.dialect is not SQLITE:
        c.exec_driver_sql("LOCK TABLE leases IN SHARE ROW EXCLUSIVE MODE")


def _conflicts(row: dict[str, Any], dev: Device) -> bool:
    if row["device"] == dev.key:
        return True
    if dev.cpus is not None and row["device_type"] == "cpu" and row["host"] == dev.host:
        return bool(parse_cpus(row["cpus"]) & dev.cpus)
    return False


def acquire(store: Store, device: str | Device, purpose: str = "a sweep", ttl: float | None = None) -> Lease:
    """Take the device's lease or raise DeviceBusy naming its holder."""
    dev = identify(device) if isinstance(device, str) else device
    life = ttl if ttl is not None else ttl_s()
    lease = Lease(dev, uuid.uuid4().hex, life)
    now = store.dialect.epoch
    with store._write() as c:
        _lock_table(c, store)
        c.execute(text(f"DELETE FROM leases WHERE expires_at < {now}"))
        rows = c.execute(text(f"SELECT *, {now} AS db_now FROM leases")).mappings().all()
        for row in rows:
            if not _conflicts(dict(row), dev):
                continue
            if row["host"] == dev.host and not process_alive(row["pid"], row["pid_started"]):
                c.execute(text("DELETE FROM leases WHERE device=:d"), {"d": row["device"]})
                continue
            raise DeviceBusy(_busy_message(dict(row), dev))
        pid = os.getpid()
        c.execute(
            text(
                "INSERT INTO leases (device, host, device_type, cpus, name, holder, pid, pid_started, purpose, "
                f"acquired_at, heartbeat_at, expires_at) VALUES (:d, :h, :t, :cpus, :n, :holder, :pid, :ps, :purpose, "
                f"{now}, {now}, {now} + :ttl)"
            ),
            {
                "d": dev.key,
                "h": dev.host,
                "t": dev.device_type,
                "cpus": cpu_ranges(dev.cpus) if dev.cpus is not None else None,
                "n": dev.name,
                "holder": lease.holder,
                "pid": pid,
                "ps": process_start(pid),
                "purpose": purpose,
                "ttl": life,
            },
        )
    return lease


def _busy_message(row: dict[str, Any], dev: Device) -> str:
    who = f"{row.get('purpose') or 'another sweep'} (pid {row['pid']}"
    if row["host"] != dev.host:
        left = max(0.0, float(row["expires_at"]) - float(row["db_now"]))
        who += f" on {row['host']}; its lease lapses in {left:.0f} s unless that process renews it"
    who += ")"
    return f"device {dev.name} is busy: {who} is measuring on it; wait for it or cancel it"


def renew(store: Store, lease: Lease) -> bool:
    """Push the lease's expiry ``ttl_s`` past now; False when it is not ours any more."""
    now = store.dialect.epoch
    changed = store.execute(
        f"UPDATE leases SET heartbeat_at={now}, expires_at={now} + :ttl WHERE device=:d AND holder=:h",
        ttl=lease.ttl_s,
        d=lease.device.key,
        h=lease.holder,
    )
    return changed == 1


def release(store: Store, lease: Lease) -> None:
    store.execute("DELETE FROM leases WHERE device=:d AND holder=:h", d=lease.device.key, h=lease.holder)


def release_process(store: Store, host: str, pid: int, pid_started: float | None) -> int:
    """Drop every lease held by process ``pid`` of ``host`` (the one started at ``pid_started``): what a
    driver does for a worker it knows is dead, which cannot release its own. Were that worker still alive,
    its next heartbeat finds its lease gone and stops it, so two sweeps never time one device. The count
    dropped back."""
    with store._write() as c:
        _lock_table(c, store)
        rows = c.execute(
            text("SELECT device, holder, pid_started FROM leases WHERE host=:h AND pid=:p"), {"h": host, "p": pid}
        ).mappings()
        mine = [
            r
            for r in rows
            if pid_started is None or r["pid_started"] is None or abs(float(r["pid_started"]) - pid_started) < 1.0
        ]
        for r in mine:
            c.execute(text("DELETE FROM leases WHERE device=:d AND holder=:o"), {"d": r["device"], "o": r["holder"]})
    return len(mine)


def holders(store: Store, name: str | None = None, host: str | None = None) -> list[dict[str, Any]]:
    """Live leases, of one device name and host when given; each with its seconds left. A lease that lapsed,
    or whose holder on this host is gone, holds nothing (``acquire`` takes it over)."""
    now = store.dialect.epoch
    here = socket.gethostname()
    rows = store.query(f"SELECT *, expires_at - {now} AS seconds_left FROM leases WHERE expires_at >= {now}")
    return [
        r
        for r in rows
        if (name is None or r["name"] == name)
        and (host is None or r["host"] == host)
        and (r["host"] != here or process_alive(r["pid"], r["pid_started"]))
    ]


@contextlib.contextmanager
def held(store: Store, device: str, purpose: str = "a sweep", wait_s: float = 0.0) -> Iterator[Lease]:
    """Hold the device's lease for the block, renewed every quarter of its lifetime; a busy device is waited
    for up to ``wait_s`` (0: refused at once). A lease lost meanwhile (it lapsed while the store was
    unreachable and another process took it) stops this process as a cancel would: two sweeps must never
    time one device."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lease = acquire(store, device, purpose)
            break
        except DeviceBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease.ttl_s / 4):
            try:
                if renew(store, lease):
                    continue
            except StoreError:
                continue  # the store is unreachable: retry until the lease lapses
            print(
                f"normscope: error: the lease on {lease.device.name} lapsed and was taken by another process: "
                "stopping so two sweeps do not time one device",
                file=sys.stderr,
            )
            os.kill(os.getpid(), signal.SIGTERM)
            return

    thread = threading.Thread(target=beat, name=f"lease-{lease.device.name}", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=5)
        with contextlib.suppress(StoreError):
            release(store, lease)
