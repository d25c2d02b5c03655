"""Sweeps started from the dashboard: a separate worker process per sweep, and the device locks.

The dashboard never measures in its own process. It writes the spec to a file,
starts ``python -m profilers run --spec FILE`` (an argument list, no shell) in a
new session so the worker outlives a closed tab or a restarted server, and then
follows the run through the store. Cancel sends SIGTERM, which the runner turns
into a cancelled run that keeps its finished points.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import SpecError, SweepSpec
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


def argv(spec_path: Path, db: Path, command: tuple[str, ...] = ("run",)) -> list[str]:
    return [sys.executable, "-m", "profilers", *command, "--spec", str(spec_path), "--db", str(db)]


def start(spec: Any, db: Path, command: tuple[str, ...] = ("run",)) -> Job:
    """Start ``python -m profilers COMMAND --spec FILE`` for ``spec`` (a SweepSpec or a lab's spec: anything
    with ``to_dict()``); returns at once. The worker refuses a busy device itself."""
    jobs_dir = db.parent / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec_path = jobs_dir / f"spec-{stamp}-{os.getpid()}.json"
    spec_path.write_text(json.dumps(spec.to_dict(), indent=1))
    log_path = spec_path.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv(spec_path, db, command),
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


class ProbeError(RuntimeError):
    """The environment probe (a `profilers env --json` subprocess) failed; the message says why."""


def probe_environment(timeout_s: float = 120) -> dict[str, Any]:
    """What `python -m profilers env --json` reports, asked of a subprocess so this process never loads torch."""
    try:
        p = subprocess.run(
            [sys.executable, "-m", "profilers", "env", "--json"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"`python -m profilers env` did not answer within {timeout_s:.0f} s") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeError(f"`python -m profilers env` failed (exit {p.returncode}): {last}")
    return json.loads(p.stdout)


def visible_devices(nvml: Any = None) -> list[str]:
    """cpu, plus the CUDA devices torch sees. Without an NVIDIA driver (NVML) there are none, and no
    subprocess is started; with one, torch's own numbering is asked of ``probe_environment``."""
    from .sensors.nvml import Nvml

    nv = nvml if nvml is not None else Nvml()
    try:
        if not nv.available or not nv.gpus():
            return ["cpu"]
    finally:
        if nvml is None:
            nv.close()
    try:
        info = probe_environment()
    except ProbeError:
        return ["cpu"]
    torch_devices = sorted({g["torch_device"] for g in info.get("gpus", []) if g.get("torch_device")})
    return ["cpu", *torch_devices]


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


# -- one sweep per device ------------------------------------------------------------------
def lock_path(db_path: Path, device: str) -> Path:
    return db_path.parent / f".normscope-{device.replace(':', '')}.lock"


@contextlib.contextmanager
def device_lock(db_path: Path, device: str) -> Iterator[None]:
    """One sweep per device at a time: two sweeps on one device would time each other.

    An exclusive flock held for the life of the process; the kernel releases it
    when the process dies, so a killed sweep never leaves the device locked.
    """
    import fcntl

    path = lock_path(db_path, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SpecError(
            f"device {device} is busy: another sweep (pid {holder}) is measuring on it; wait for it or cancel it"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def device_busy(db_path: Path, device: str) -> int | None:
    """The pid holding ``device``'s lock, or None when it is free."""
    import fcntl

    path = lock_path(db_path, device)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
