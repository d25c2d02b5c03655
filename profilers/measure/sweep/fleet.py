"""A kernel sweep over a Ray cluster: its groups spread over the cluster's devices, one stored run per device.

One run per device, not one run whose points carry their device: everything a point is judged against is its
device's own (the copy ladder and roofline, idle power, the calibration, the disturbance probe, the machine
record), every reader (Results, Compare, Recommend, the report) reads a run as one device's measurements, and
a ratio is formed inside a group, which never leaves its device. The runs of one sweep share a fleet uid
(``extra.fleet``) and each carries the ``fleet`` artifact: every run, node and device of the sweep, and the
groups retried or lost, so Runs and Compare can set the devices side by side.

How it runs. The driver (this process: the CLI, or the dashboard's worker) connects to Ray, starts one actor
per device (per GPU on CUDA, ``num_gpus=1``, Ray hiding the other GPUs; per node on CPU, holding the node's
whole CPU count) pinned to its node, and hands out the groups: one per free device, the next when it
finishes, so at most one group runs on a device at a time. Each actor opens its device's run
(``runner.Session``), measures the ladder and idle power under the device's lease, then times each group it
is given under that lease (two sweeps, local or over a cluster, never time one device: on one host the
actors of a CPU cluster take turns) and commits the group's points in one transaction, so a worker killed
mid-group leaves none of the group's points. The driver retries such a group once on another device; killed
again, its points are stored failed with the reason. A dead worker's run ends interrupted with the groups it
committed. Ctrl-C, or SIGTERM from the dashboard's Cancel, kills every actor and ends every run cancelled: the
signal is only noted (``runs.cancellable``), and the driver acts on it between its turns of ``ray.wait``, never
inside Ray's own code.

A SQLite file serves a cluster on one host; nodes on several hosts need a store they all reach (PostgreSQL).
Nothing here imports torch or Ray at import: the driver needs neither until it runs, the actor loads torch in
its own process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...cluster import Slot, connect, slots
from ...runs import CANCELLED_BY_USER, Cancelled, cancellable, checkpoint, first_line
from ...spec import Point, SpecError, SweepSpec
from ...store import Store, StoreError
from ...store.backend import locate
from ...store.records import PointResult

RETRIES = 1  # a group whose worker died is given to another device this many times
START_TIMEOUT_S = 300.0  # a device whose worker has not started (imports, ladder) by then is left out
LEASE_WAIT_S = 900.0  # how long a worker waits for its device's lease (another sweep on it) before giving up
WAIT_S = 1.0  # the driver's longest turn inside ray.wait: how soon it sees a cancel

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- one device's worker (a Ray actor) -------------------------------------------------------
class DeviceWorker:
    """One device's run: opened when the actor starts, one group per ``measure`` call, closed by ``finish``."""

    def __init__(self, spec_doc: dict[str, Any], db: str, label: str | None, fleet: dict[str, Any]) -> None:
        spec = SweepSpec.from_dict(spec_doc)
        from ..machine import hugepages

        if spec.device == "cpu":
            hugepages.request(spec.cpu_pages)  # read by torch at its first allocation: before the import
        import torch

        from ..machine import provenance
        from ..machine.devices import resolve_device
        from .group import KERNELS
        from .runner import Session

        self.spec = spec
        self.device_name = "cuda:0" if spec.device == "cuda" else "cpu"  # Ray shows the worker its GPU alone
        device = resolve_device(self.device_name)
        threads = spec.threads or provenance.usable_cores()
        torch.set_num_threads(threads)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.store = Store(db)
        self.planned = 0
        self.session = Session.create(spec, self.store, device, threads, None, label, KERNELS, 0, fleet)
        try:
            with self._lease("a cluster sweep: the device's reference measurements"):
                self.session.prepare()
        except BaseException as e:
            self.session.close()
            self.store.finish_run(self.session.run_id, "failed", first_line(e))
            raise

    def _lease(self, purpose: str) -> Any:
        from ...store import leases

        return leases.held(self.store, self.device_name, purpose, wait_s=LEASE_WAIT_S)

    def info(self) -> dict[str, Any]:
        import torch

        from ...store.db import process_start

        gpu = self.session.sensors.gpu
        return {
            "run_id": self.session.run_id,
            "pid": os.getpid(),
            "pid_started": process_start(os.getpid()),
            "host": socket.gethostname(),
            "device": torch.cuda.get_device_name(0) if self.device_name != "cpu" else "cpu",
            "gpu_uuid": gpu.uuid().value if gpu else None,
        }

    def measure(self, index: int, of: int, group: list[tuple[int, Point]], attempt: int) -> dict[str, Any]:
        """Time group ``index`` and commit its points in one transaction; their statuses back."""
        run_id = self.session.run_id
        self.planned += len(group)
        self.store.update_run(run_id, points_planned=self.planned)
        retry = f" (retry {attempt})" if attempt else ""
        with self._lease(f"a cluster sweep: run {run_id}, group {index + 1} of {of}{retry}"):
            start = time.perf_counter()
            results = self.session.measure(group)
            measure_s = time.perf_counter() - start
        self.store.add_points(run_id, [(seq, res) for (seq, _), res in zip(group, results, strict=True)])
        return {"run_id": run_id, "statuses": [r.status for r in results], "measure_s": measure_s}

    def finish(self, status: str, error: str | None = None) -> None:
        try:
            self.session.close()
        finally:
            self.store.finish_run(self.session.run_id, status, error)
            self.store.close()


# -- the driver ------------------------------------------------------------------------------
@dataclass(eq=False)
class Device:
    """A device's worker as the driver follows it."""

    slot: Slot
    actor: Any
    info: dict[str, Any] = field(default_factory=dict)
    groups: list[int] = field(default_factory=list)
    alive: bool = True
    reason: str | None = None


@dataclass
class FleetOutcome:
    """How a sweep over a cluster ended: its devices' runs, and the groups retried or lost."""

    uid: str
    status: str = "running"
    error: str | None = None
    devices: list[Device] = field(default_factory=list)
    retried: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    timing: list[dict[str, Any]] = field(default_factory=list)  # per group: its measuring, and the whole round trip

    @property
    def run_ids(self) -> list[int]:
        return [d.info["run_id"] for d in self.devices if d.info.get("run_id") is not None]

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "completed" else 130 if self.status == "cancelled" else 1


def run_fleet(spec: SweepSpec, db: str | Path, label: str | None = None, say: Say = _say) -> FleetOutcome:
    """Run ``spec`` (with ``spec.ray``) over the cluster; every device's run stored in ``db``."""
    from .runner import groups_of

    where = locate(db)
    ray = connect(spec.ray or "auto")
    outcome = FleetOutcome(uuid.uuid4().hex)
    try:
        found = slots(ray, spec.device_type)
        hosts = sorted({s.node_ip for s in found})
        if where.is_file and len(hosts) > 1:
            raise SpecError(
                f"the cluster spans {len(hosts)} hosts ({', '.join(hosts)}) and a SQLite file is one host's: give "
                "--db postgresql://… (a store every node reaches)"
            )
        target = str(Path(where.target).resolve()) if where.is_file else where.target
        groups = groups_of(spec)
        with Store(db) as store, cancellable():
            try:
                _start(ray, spec, target, label, found, outcome, store, say)
                _schedule(ray, groups, outcome, store, say)
                _finish(ray, outcome, store, groups, say)
            except (KeyboardInterrupt, Cancelled):
                _cancel(ray, outcome, store)
                outcome.status, outcome.error = "cancelled", CANCELLED_BY_USER
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
    return outcome


def _start(
    ray: Any,
    spec: SweepSpec,
    db: str,
    label: str | None,
    found: list[Slot],
    outcome: FleetOutcome,
    store: Store,
    say: Say,
) -> None:
    """One worker per device; a device whose worker cannot start is left out with its reason."""
    remote = ray.remote(max_restarts=0, max_task_retries=0)(DeviceWorker)
    fleet = {"uid": outcome.uid, "address": spec.ray, "devices": len(found), "driver": socket.gethostname()}
    fleet["driver_pid"] = os.getpid()
    for slot in found:
        mine = {**fleet, "node": slot.node_ip, "node_id": slot.node_id[:12], "slot": slot.index}
        actor = remote.options(**slot.options).remote(spec.to_dict(), db, label, mine)
        outcome.devices.append(Device(slot, actor))
    say(f"cluster sweep over {len(found)} device(s): starting a worker on each (fleet {outcome.uid[:8]})")
    pending = {d.actor.info.remote(): d for d in outcome.devices}
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        checkpoint()
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(WAIT_S, max(0.1, deadline - time.monotonic())))
        if not ready and time.monotonic() < deadline:
            continue
        if not ready:
            for d in pending.values():
                d.alive, d.reason = False, f"its worker did not start in {START_TIMEOUT_S:.0f} s"
                ray.kill(d.actor, no_restart=True)
            break
        d = pending.pop(ready[0])
        try:
            d.info = ray.get(ready[0])
            say(f"device {d.slot.name}: {d.info['device']} on {d.info['host']}, run {d.info['run_id']}")
        except Exception as e:
            d.alive, d.reason = False, why(e)
            say(f"device {d.slot.name}: left out: {d.reason}")
    if not any(d.alive for d in outcome.devices):
        raise SpecError(
            "no device of the cluster could start a worker: "
            + "; ".join(f"{d.slot.name}: {d.reason}" for d in outcome.devices)
        )


def _schedule(ray: Any, groups: list[list[tuple[int, Any]]], outcome: FleetOutcome, store: Store, say: Say) -> None:
    """Hand the groups out, one per free device; a group whose worker died goes once to another device."""
    queue: deque[int] = deque(range(len(groups)))
    tried: dict[int, list[Device]] = {}
    running: dict[Any, tuple[Device, int, float]] = {}
    while queue or running:
        checkpoint()  # between turns of ray.wait: a cancel is acted on here, in the driver's own code
        free = [d for d in outcome.devices if d.alive and d not in [dv for dv, _, _ in running.values()]]
        for gi in list(queue):
            if not free:
                break
            others = [d for d in free if d not in tried.get(gi, [])]
            if not others:
                continue
            d = others[0]
            free.remove(d)
            queue.remove(gi)
            tried.setdefault(gi, []).append(d)
            ref = d.actor.measure.remote(gi, len(groups), groups[gi], len(tried[gi]) - 1)
            running[ref] = (d, gi, time.perf_counter())
        if not running:  # groups left, and no live device that has not tried them
            for gi in queue:
                _lose(store, outcome, groups[gi], gi, tried.get(gi, []), "no other device was left to measure it")
            break
        ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
        for ref in ready:
            d, gi, sent = running.pop(ref)
            try:
                got = ray.get(ref)
                trip = time.perf_counter() - sent
            except Exception as e:
                reason = why(e)
                d.alive, d.reason = _alive(ray, d), reason
                if not d.alive:
                    _bury(store, d)
                say(f"group {gi + 1} of {len(groups)} on {d.slot.name}: lost ({reason})")
                if len(tried[gi]) <= RETRIES and any(x.alive and x not in tried[gi] for x in outcome.devices):
                    outcome.retried.append({"group": gi, "from_run": d.info.get("run_id"), "reason": reason})
                    queue.appendleft(gi)
                else:
                    _lose(store, outcome, groups[gi], gi, tried[gi], reason)
                continue
            d.groups.append(gi)
            outcome.timing.append({"group": gi, "slot": d.slot.index, "measure_s": got["measure_s"], "trip_s": trip})
            counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(got["statuses"]).items()))
            say(f"group {gi + 1} of {len(groups)} done on {d.slot.name} (run {got['run_id']}): {counts}")


def _bury(store: Store, d: Device) -> None:
    """A dead worker's leases dropped: killed mid-group, it could not release the one it held, and a lease of a
    process on another host (or one no later sweep on this host asks for) would otherwise stay until it lapses."""
    from ...store import leases

    if d.info.get("pid") and d.info.get("host"):
        with contextlib.suppress(StoreError):
            leases.release_process(store, d.info["host"], d.info["pid"], d.info.get("pid_started"))


def _alive(ray: Any, d: Device) -> bool:
    """Whether a device's worker still answers after one of its groups failed."""
    try:
        ray.get(d.actor.info.remote(), timeout=30)
        return True
    except Exception:
        return False


def _lose(
    store: Store, outcome: FleetOutcome, group: list[tuple[int, Any]], gi: int, tried: list[Device], why: str
) -> None:
    """A group that could not be measured: its points stored failed with the reason, in the run of the device
    that tried it last (or none, when no device ever did), so the sweep's record says what is missing and why."""
    runs = [d.info.get("run_id") for d in tried if d.info.get("run_id") is not None]
    reason = f"not measured: its worker was lost {len(tried)} time(s) ({why})" if tried else f"not measured: {why}"
    if runs:
        device = "cpu" if tried[-1].slot.kind == "cpu" else "cuda:0"
        failed = [(seq, PointResult.for_point(p, device, "failed", reason)) for seq, p in group]
        with contextlib.suppress(StoreError):
            store.add_points(runs[-1], failed)
    outcome.lost.append({"group": gi, "run": runs[-1] if runs else None, "reason": reason})


def _finish(ray: Any, outcome: FleetOutcome, store: Store, groups: list, say: Say) -> None:
    """Close every device's run, the dead ones as interrupted; every run gets the fleet's record."""
    for d in outcome.devices:
        if d.alive:
            try:
                ray.get(d.actor.finish.remote("completed"), timeout=120)
                continue
            except Exception as e:
                d.alive, d.reason = False, why(e)
        _bury(store, d)
        if d.info.get("run_id") is not None:
            store.finish_run(d.info["run_id"], "interrupted", f"its worker was lost: {d.reason}")
    record = fleet_record(outcome, len(groups))
    for run_id in outcome.run_ids:
        store.put_artifact(run_id, "fleet", record)
    unstored = [x["group"] + 1 for x in outcome.lost if x["run"] is None]
    if unstored:
        outcome.status = "failed"
        outcome.error = (
            f"groups {', '.join(map(str, unstored))} were not measured: every device of the cluster was lost"
        )
    else:
        outcome.status = "completed"
        if outcome.lost:
            n = len(outcome.lost)
            outcome.error = f"{n} group(s) not measured: their points are stored failed with the reason"


def _cancel(ray: Any, outcome: FleetOutcome, store: Store) -> None:
    """Every worker killed, and every run of the sweep ended cancelled: those the driver heard of, and those a
    worker opened before it could say so (a cancel while the workers start), found by the sweep's uid."""
    for d in outcome.devices:
        with contextlib.suppress(Exception):
            ray.kill(d.actor, no_restart=True)
    run_ids = set(outcome.run_ids)
    with contextlib.suppress(StoreError):
        run_ids |= {
            r["id"]
            for r in store.list_runs("kernels")
            if r["status"] == "running" and ((r.get("extra") or {}).get("fleet") or {}).get("uid") == outcome.uid
        }
    for run_id in sorted(run_ids):
        with contextlib.suppress(StoreError):
            store.finish_run(run_id, "cancelled", CANCELLED_BY_USER)


def fleet_record(outcome: FleetOutcome, groups: int) -> dict[str, Any]:
    """What each run of the sweep stores as its ``fleet`` artifact."""
    return {
        "uid": outcome.uid,
        "groups": groups,
        "devices": [
            {
                "slot": d.slot.index,
                "node": d.slot.node_ip,
                "node_id": d.slot.node_id[:12],
                "kind": d.slot.kind,
                "device": d.info.get("device"),
                "gpu_uuid": d.info.get("gpu_uuid"),
                "host": d.info.get("host"),
                "run_id": d.info.get("run_id"),
                "groups": sorted(d.groups),
                "lost": None if d.alive else d.reason,
            }
            for d in outcome.devices
        ],
        "retried": outcome.retried,
        "lost": outcome.lost,
        "timing": outcome.timing,
    }


def why(exc: BaseException) -> str:
    """A Ray failure in one line: a worker that died says so; an error raised in it gives its own first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return first_line(cause)
    name = type(exc).__name__
    if "ActorDied" in name or "ActorError" in name or "WorkerCrashed" in name:
        return "the worker process died"
    return first_line(exc)
