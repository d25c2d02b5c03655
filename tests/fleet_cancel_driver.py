"""The CLI's cluster sweep (`python -m profilers run --ray ADDRESS …`) with torch-free device workers, for the test
that cancels a driver while it waits inside ``ray.wait``.

Each worker opens its device's run in the store as the real one does (``extra.fleet`` from the start), commits
the first group it is given at once, and holds any later group until it is killed, so the driver is left
waiting on Ray. The driver itself is NormScope's, unchanged but for two watch points around Ray: once the first
group's result is in, the next entry into ``ray.wait`` prints ``waiting`` on stdout (the test sends its signal
then), and a signal noted while the driver was inside ``ray.wait`` prints ``SIGNAME landed inside ray.wait``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

import ray

from profilers import runs
from profilers.cli import main
from profilers.measure.sweep import fleet
from profilers.spec import SweepSpec
from profilers.store import Store
from profilers.store.records import PointResult


class HeldWorker:
    """A device's worker that times nothing: group results stored as skipped points, later groups held."""

    def __init__(self, spec_doc: dict[str, Any], db: str, label: str | None, fleet_doc: dict[str, Any]) -> None:
        self.store = Store(db)
        self.run_id = self.store.create_run(SweepSpec.from_dict(spec_doc), {"hostname": socket.gethostname()}, {}, 0)
        self.store.update_run(self.run_id, extra={"fleet": fleet_doc})
        self.measured = 0

    def info(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(), "device": "cpu"}

    def measure(self, index: int, of: int, group: list, attempt: int) -> dict[str, Any]:
        if self.measured or index > 0:
            time.sleep(3600)  # held until the driver's cancel kills this worker
        self.measured += 1
        results = [PointResult.for_point(p, "cpu", "skipped", "a test worker: nothing timed") for _, p in group]
        self.store.add_points(self.run_id, [(seq, r) for (seq, _), r in zip(group, results, strict=True)])
        return {"run_id": self.run_id, "statuses": [r.status for r in results], "measure_s": 0.0}

    def finish(self, status: str, error: str | None = None) -> None:
        self.store.finish_run(self.run_id, status, error)


_wait, _get = ray.wait, ray.get
state = {"group_done": False, "announced": False}


def get(*args: Any, **kw: Any) -> Any:
    got = _get(*args, **kw)
    if isinstance(got, dict) and "statuses" in got:
        state["group_done"] = True
    return got


def wait(*args: Any, **kw: Any) -> Any:
    before = runs.cancel_requested()
    if state["group_done"] and not state["announced"]:
        state["announced"] = True
        print("waiting", flush=True)
    try:
        return _wait(*args, **kw)
    finally:
        noted = runs.cancel_requested()
        if before is None and noted is not None:
            print(f"{noted} landed inside ray.wait", flush=True)


if __name__ == "__main__":
    fleet.DeviceWorker = HeldWorker  # type: ignore[misc]
    ray.wait, ray.get = wait, get
    sys.exit(main(sys.argv[1:]))
