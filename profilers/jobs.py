"""Sweeps started from the dashboard: a separate worker process per sweep.

The dashboard never measures in its own process. It writes the spec to a file,
starts ``python -m profilers run --spec FILE`` (an argument list, no shell) in a
new session so the worker outlives a closed tab or a restarted server, and then
follows the run through the store. Cancel sends SIGTERM, which the runner turns
into a cancelled run that keeps its finished points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import SweepSpec
from .store import Store

REPO_ROOT = Path(__file__).resolve().parent.parent

# seconds per point beyond the timing budget: inputs, correctness gate, memory pass
_OVERHEAD_S = {"cpu": 0.3, "cuda": 0.5}
_COMPILE_S = {"cpu": 4.0, "cuda": 8.0}


def estimate_seconds(spec: SweepSpec) -> float:
    """A rough upper estimate of a sweep's wall time, shown before it starts."""
    dev = spec.device_type
    n = len(spec.points())
    per_point = (spec.warmup_ms + spec.budget_ms) / 1e3 + _OVERHEAD_S[dev]
    if spec.energy:
        per_point += spec.energy_repeats * (spec.energy_window_s + 0.25)
    if spec.trace:
        per_point += 0.5
    compiled = sum(1 for p in spec.points() if p.impl == "compiled")
    # big CPU shapes are slow per call: at least the minimum sample count of calls
    slow = 0.0
    if dev == "cpu":
        for p in spec.points():
            calls_s = p.tokens * p.hidden * 4 / 2e9  # ~2 GB/s for composed eager ops
            slow += max(0.0, 5 * calls_s - spec.budget_ms / 1e3)
    startup = 5.0 + (2.0 if spec.energy else 0.0)
    return startup + n * per_point + compiled * _COMPILE_S[dev] + slow


@dataclass(frozen=True)
class Job:
    pid: int
    spec_path: Path
    log_path: Path


def argv(spec_path: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "profilers", "run", "--spec", str(spec_path), "--db", str(db)]


def start(spec: SweepSpec, db: Path) -> Job:
    """Start a worker for ``spec``; returns at once. The worker refuses a busy device itself."""
    jobs_dir = db.parent / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec_path = jobs_dir / f"spec-{stamp}-{os.getpid()}.json"
    spec_path.write_text(json.dumps(spec.to_dict(), indent=1))
    log_path = spec_path.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv(spec_path, db),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    # reap the worker when it exits, so it never lingers as a zombie of the server
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return Job(proc.pid, spec_path, log_path)


def run_of(store: Store, pid: int) -> dict[str, Any] | None:
    """The run a worker created, found by its pid (newest first)."""
    row = store.con.execute("SELECT id FROM runs WHERE pid=? ORDER BY id DESC LIMIT 1", (pid,)).fetchone()
    return store.get_run(int(row["id"])) if row else None


def active_runs(store: Store) -> list[dict[str, Any]]:
    """Runs still measuring: status running and a live process (dead ones become interrupted)."""
    store.mark_interrupted()
    return [r for r in store.list_runs() if r["status"] == "running"]


def cancel(run: dict[str, Any]) -> bool:
    """Ask a run's worker to stop; True when the signal was delivered."""
    pid = run.get("pid")
    if not pid or run.get("status") != "running":
        return False
    try:
        os.kill(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def log_tail(log_path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
