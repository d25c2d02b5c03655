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
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import SpecError, SweepSpec
from .store import Store, locate

REPO_ROOT = Path(__file__).resolve().parent.parent

# seconds per point beyond the timing budget: inputs, correctness gate, memory pass
_OVERHEAD_S = {"cpu": 0.3, "cuda": 0.5}
_COMPILE_S = {"cpu": 4.0, "cuda": 8.0}


def estimate_seconds(spec: SweepSpec) -> float:
    """A rough upper estimate of a sweep's wall time, shown before it starts.

    Per point: the first warmup, every round's re-warmup and share of the budget (rounds may be added while
    an interval is wide: counted at 1.3×), the gate and memory passes; compiles, energy windows and traces
    apart; big CPU shapes need at least three calls per visit whatever the budget. A run over N processes
    takes N times as long.
    """
    dev = spec.device_type
    points = spec.points()
    rounds = spec.rounds * 1.3
    rewarm_s = max(2.0, spec.warmup_ms / 5) / 1e3
    per_point = spec.warmup_ms / 1e3 + rounds * rewarm_s + spec.budget_ms / 1e3 * 1.3 + _OVERHEAD_S[dev]
    if spec.energy:
        per_point += spec.energy_repeats * (spec.energy_window_s + 0.4)
    if spec.trace:
        per_point += 0.5
    compiled = sum(1 for p in points if p.impl == "compiled")
    slow = 0.0
    if dev == "cpu":
        for p in points:
            call_s = p.tokens * p.hidden * 4 / 2e9  # ~2 GB/s for composed eager ops
            slow += max(0.0, rounds * 3 * call_s - spec.budget_ms / 1e3)
    startup = 5.0 + (3.0 if dev == "cpu" else 1.5) + (2.0 if spec.energy else 0.0)  # + the copy ladder
    return (startup + len(points) * per_point + compiled * _COMPILE_S[dev] + slow) * spec.processes


@dataclass(frozen=True)
class Job:
    pid: int
    spec_path: Path
    log_path: Path

    @property
    def status_path(self) -> Path:
        return status_path(self.spec_path)


def status_path(spec_path: Path) -> Path:
    """Where a worker's ending is recorded (exit code, why), next to its spec and log."""
    return spec_path.with_suffix(".status.json")


def argv(spec_path: Path, db: str | Path, command: tuple[str, ...] = ("run",)) -> list[str]:
    """The worker's command line. A database URL is not on it (another user's ``ps`` would show its
    password): the worker finds it in ``$NORMSCOPE_DB`` (``worker_env``)."""
    where = locate(db)
    base = [sys.executable, "-m", "profilers", *command, "--spec", str(spec_path)]
    return [*base, "--db", where.target] if where.is_file else base


def worker_env(db: str | Path) -> dict[str, str]:
    where = locate(db)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not where.is_file:
        env["NORMSCOPE_DB"] = where.target
    return env


def start(spec: Any, db: str | Path, command: tuple[str, ...] = ("run",)) -> Job:
    """Start ``python -m profilers COMMAND --spec FILE`` for ``spec`` (a SweepSpec or a lab's spec: anything
    with ``to_dict()``); returns at once. The worker refuses a busy device itself.

    A watcher thread reaps the worker and records how it ended (``status_path``): a refusal keeps its one
    line; a death by a signal (the kernel's OOM killer, a kill, a crash) is written on the run as its
    reason, and whatever the worker left running in its session is killed so no lock stays held.
    """
    jobs_dir = locate(db).local_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    spec_path = jobs_dir / f"spec-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
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
            env=worker_env(db),
        )
    job = Job(proc.pid, spec_path, log_path)
    threading.Thread(target=_watch, args=(proc, job, db), name=f"watch-{proc.pid}", daemon=True).start()
    return job


def exit_reason(returncode: int, pid: int, kernel_log: str | None = None) -> str | None:
    """Why a worker ended, in one line; None for an ordinary ending (done, failed point by point, cancelled)."""
    if returncode in (0, 1, 130):
        return None
    if returncode == 2:
        return "refused"
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        text = f"the worker (pid {pid}) was killed by {name}"
        if sig == signal.SIGKILL:
            oom = _oom_line(pid, kernel_log)
            text += (
                f"; the kernel log says: {oom}"
                if oom
                else (
                    "; out of memory is the usual cause (the kernel's OOM killer sends SIGKILL), the kernel log "
                    "was not readable here to confirm it"
                )
            )
        elif sig == signal.SIGSEGV:
            text += " (a crash inside a native library)"
        return text
    return f"the worker (pid {pid}) exited with code {returncode}"


def _oom_line(pid: int, kernel_log: str | None) -> str | None:
    """The kernel's OOM-kill line for ``pid`` (from ``dmesg`` when readable)."""
    text = kernel_log
    if text is None:
        try:
            text = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    for line in reversed(text.splitlines()):
        if f"Killed process {pid} " in line or f"Killed process {pid}(" in line:
            return line.split("]", 1)[-1].strip()
    return None


def _watch(proc: subprocess.Popen, job: Job, db: str | Path) -> None:
    rc = proc.wait()
    reason = exit_reason(rc, proc.pid)
    record: dict[str, Any] = {"pid": proc.pid, "returncode": rc, "finished_at": time.time(), "reason": reason}
    if reason == "refused":
        record["reason"] = log_tail(job.log_path, 1).removeprefix("normscope: error: ")
    elif reason:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its session (compile workers) release the lock
        with contextlib.suppress(Exception), Store(db) as store:
            run = run_of(store, proc.pid)
            if run and run["status"] in ("running", "interrupted"):
                store.finish_run(run["id"], "interrupted", reason)
                record["run_id"] = run["id"]
    with contextlib.suppress(OSError):
        job.status_path.write_text(json.dumps(record))


def ending_of(spec_path: str | Path) -> dict[str, Any] | None:
    """How the worker started with ``spec_path`` ended (its status record), or None while it runs."""
    if not spec_path:
        return None
    try:
        return json.loads(status_path(Path(spec_path)).read_text())
    except (OSError, ValueError):
        return None


def recent_endings(db: str | Path, within_s: float = 3600.0) -> list[dict[str, Any]]:
    """Workers started from this store that were refused or killed in the last ``within_s``, newest first,
    not yet dismissed; each with its spec file, so a page can show the one line after a reload."""
    out = []
    now = time.time()
    for path in sorted((locate(db).local_dir / "jobs").glob("*.status.json"), reverse=True):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("reason") and not record.get("dismissed") and now - record.get("finished_at", 0) < within_s:
            record["path"] = str(path)
            out.append(record)
    return out


def dismiss(record: dict[str, Any]) -> None:
    path = Path(record["path"])
    data = {k: v for k, v in record.items() if k != "path"}
    data["dismissed"] = True
    with contextlib.suppress(OSError):
        path.write_text(json.dumps(data))


class ProbeError(RuntimeError):
    """The environment probe (a `profilers env --json` subprocess) failed; the message says why."""


def probe_environment(timeout_s: float = 120) -> dict[str, Any]:
    """What `python -m profilers env --json` reports, asked of a subprocess so this process never loads torch."""
    return _probe(["env", "--json"], timeout_s)


def probe_cluster(address: str, timeout_s: float = 90) -> dict[str, Any]:
    """What `python -m profilers cluster ADDRESS --json` reports: the Ray cluster's nodes, asked of a
    subprocess so this process never joins a cluster."""
    return _probe(["cluster", address, "--json"], timeout_s)


def _probe(args: list[str], timeout_s: float) -> dict[str, Any]:
    what = f"`python -m profilers {' '.join(a for a in args if a != '--json')}`"
    try:
        p = subprocess.run(
            [sys.executable, "-m", "profilers", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{what} did not answer within {timeout_s:.0f} s") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("normscope: error: ")
        raise ProbeError(f"{what} failed (exit {p.returncode}): {last}")
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
    """The run a worker created, found by its pid (newest first); for a worker that drove a sweep over a
    cluster, the newest of the runs its devices created."""
    run_id = store.run_of_pid(pid)
    if run_id is None:
        runs = fleet_runs_of(store, pid)
        run_id = runs[0]["id"] if runs else None
    return store.get_run(run_id) if run_id is not None else None


def fleet_of(run: dict[str, Any]) -> dict[str, Any] | None:
    """A run's part in a sweep over a cluster (``measure/sweep/fleet.py``), or None for a local run."""
    fleet = (run.get("extra") or {}).get("fleet")
    return fleet if isinstance(fleet, dict) else None


def fleet_runs_of(store: Store, driver_pid: int) -> list[dict[str, Any]]:
    """The runs of the cluster sweep driven by ``driver_pid`` on this host, newest first."""
    here = socket.gethostname()
    return [
        r
        for r in store.list_runs("kernels")
        if (f := fleet_of(r)) and f.get("driver_pid") == driver_pid and f.get("driver") == here
    ]


def active_runs(store: Store) -> list[dict[str, Any]]:
    """Runs still measuring: status running and a live process (dead ones become interrupted)."""
    store.mark_interrupted()
    return [r for r in store.list_runs() if r["status"] == "running"]


def cancel(run: dict[str, Any]) -> bool:
    """Ask a run's worker to stop; True when the signal was delivered. A run of a sweep over a cluster is
    stopped through its driver, which stops every device's worker (a device's worker stopped alone would
    have its group retried elsewhere); a driver on another host cannot be reached from here."""
    pid = run.get("pid")
    if not pid or run.get("status") != "running":
        return False
    fleet = fleet_of(run)
    if fleet:
        if fleet.get("driver") != socket.gethostname() or not fleet.get("driver_pid"):
            return False
        pid = fleet["driver_pid"]
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
@contextlib.contextmanager
def device_lock(store: Store, device: str, purpose: str = "another sweep") -> Iterator[None]:
    """One sweep per device at a time, across every process and machine sharing ``store``: two sweeps on one
    device would time each other. A lease in the store (``store/leases.py``), renewed while the block runs;
    a killed sweep's lease is taken over at once on its own host and lapses after its lifetime elsewhere.
    A busy device is a SpecError (the CLI's refusal, exit 2) naming the holder."""
    from .store import leases

    try:
        with leases.held(store, device, purpose):
            yield
    except leases.DeviceBusy as e:
        raise SpecError(str(e)) from None


def device_busy(db: str | Path, device: str) -> dict[str, Any] | None:
    """The live lease on ``device`` of this host in the store ``db`` (pid, host, purpose), or None when free."""
    import socket

    from .store import StoreError, leases

    try:
        with Store(db, readonly=True) as store:
            rows = leases.holders(store, device, socket.gethostname())
    except StoreError:
        return None  # no store yet: nothing holds anything
    return rows[0] if rows else None
