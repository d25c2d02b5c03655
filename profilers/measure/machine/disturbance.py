"""Was the machine busy while a visit was timed? Read from /proc (CPU) and NVML (GPU clocks).

On a 2-core VM one descheduled OpenMP thread stalls its partner at every
barrier, so a window in which this process waited in the run queue 45-50% of
the time came out 10x slow. A visit is *disturbed* when, over its window:

- this process's threads spent more than ``RUNQ_WAIT_MAX`` of their scheduled
  time waiting in the run queue (``/proc/self/task/*/schedstat``, field 2);
- other processes used more than ``OTHERS_CORES_MAX`` cores (``/proc/stat``
  busy time minus this process's own CPU time);
- the hypervisor stole more than ``STEAL_MAX`` of the CPU time (``/proc/stat``);
- (GPU) NVML reports a clock slowdown that the workload did not cause itself
  (thermal, power brake, hardware slowdown). A software power cap is recorded
  with the visit but is not a disturbance: a data-centre GPU running a heavy
  kernel at its power limit lowers its clocks in every window, on every visit,
  so it belongs to the workload's cost (on an H200 a Llama-3-8B block forward
  was capped in 7 of 7 rounds), not to a disturbed window.

Where /proc cannot be read the probe says "not measured" with the reason and
no visit is ever called disturbed on that evidence. The thresholds start from
the values above; ``benchmarks/cpu_agreement.py`` measures visits with and
without a competing process to check them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# a point with more than a third of its rounds disturbed (after re-queueing) is unstable, not ok
BUSY_ROUNDS_MAX_DIV = 3

RUNQ_WAIT_MAX = 0.10
OTHERS_CORES_MAX = 0.25
STEAL_MAX = 0.02
# clock slowdowns a heavy kernel causes itself: recorded, never a disturbance
WORKLOAD_SLOWDOWNS = frozenset({"power cap"})


class Reader(Protocol):
    def read(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...


class ProcReader:
    """The real /proc; a seam so tests can plant a busy machine."""

    def read(self, path: str) -> str:
        return Path(path).read_text()

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


@dataclass(frozen=True)
class VisitWindow:
    """What one visit's window looked like; ``reasons`` empty when it was clean."""

    runq_wait_share: float | None = None
    others_cores: float | None = None
    steal_share: float | None = None
    gpu_slowdown: str | None = None
    reasons: tuple[str, ...] = ()
    not_measured: str | None = None

    @property
    def disturbed(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())}


@dataclass
class _Token:
    wall_s: float
    sched: dict[str, tuple[int, int]] = field(default_factory=dict)  # tid → (cpu ns, wait ns)
    stat: tuple[int, int, int] | None = None  # (busy, steal, total) jiffies
    own_cpu_s: float = 0.0


class CpuProbe:
    """Run-queue wait of this process, other processes' CPU and steal over a window, from /proc."""

    def __init__(
        self,
        reader: Reader | None = None,
        clock: Callable[[], float] = time.monotonic,
        own_cpu_s: Callable[[], float] | None = None,
        clock_ticks: int | None = None,
    ) -> None:
        self.reader = reader or ProcReader()
        self.clock = clock
        self.own_cpu_s = own_cpu_s or (lambda: sum(os.times()[:2]))
        self.ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.reason: str | None = None
        try:
            self._stat()
            self._sched()
        except (OSError, ValueError, IndexError) as e:
            self.reason = f"/proc is not readable here ({type(e).__name__}): disturbance not measured"

    def _sched(self) -> dict[str, tuple[int, int]]:
        out = {}
        for tid in self.reader.listdir("/proc/self/task"):
            try:
                fields = self.reader.read(f"/proc/self/task/{tid}/schedstat").split()
            except OSError:
                continue  # a thread that ended between listing and reading
            out[tid] = (int(fields[0]), int(fields[1]))
        return out

    def _stat(self) -> tuple[int, int, int]:
        line = self.reader.read("/proc/stat").splitlines()[0].split()
        vals = [int(v) for v in line[1:]]
        user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
        steal = vals[7] if len(vals) > 7 else 0
        total = sum(vals[:8])
        busy = user + nice + system + irq + softirq
        return busy, steal, total

    def begin(self) -> _Token | None:
        if self.reason:
            return None
        return _Token(self.clock(), self._sched(), self._stat(), self.own_cpu_s())

    def end(self, token: _Token | None) -> VisitWindow:
        if token is None:
            return VisitWindow(not_measured=self.reason)
        wall = max(self.clock() - token.wall_s, 1e-9)
        sched, stat, own = self._sched(), self._stat(), self.own_cpu_s() - token.own_cpu_s
        cpu_ns = wait_ns = 0
        for tid, (c1, w1) in sched.items():
            c0, w0 = token.sched.get(tid, (0, 0))
            cpu_ns += c1 - c0
            wait_ns += w1 - w0
        runq = wait_ns / (cpu_ns + wait_ns) if cpu_ns + wait_ns > 0 else 0.0
        busy = (stat[0] - token.stat[0]) / self.ticks
        steal_j = stat[1] - token.stat[1]
        total_j = stat[2] - token.stat[2]
        others = max(0.0, (busy - own) / wall)
        steal = steal_j / total_j if total_j > 0 else 0.0
        reasons = []
        if runq > RUNQ_WAIT_MAX:
            reasons.append(f"waited {100 * runq:.0f}% of the time for a CPU")
        if others > OTHERS_CORES_MAX:
            reasons.append(f"other processes used {others:.2f} cores")
        if steal > STEAL_MAX:
            reasons.append(f"the hypervisor stole {100 * steal:.1f}% of the CPU")
        return VisitWindow(runq, others, steal, None, tuple(reasons))


class GpuProbe:
    """NVML clock slowdowns read at the end of a window (a snapshot: thermal, power brake, hardware slowdown
    disturb; a power cap is recorded only); null without NVML."""

    def __init__(self, gpu: Any = None) -> None:
        self.gpu = gpu
        self.reason = None if gpu is not None else "no NVML device for this GPU: clock slowdowns not measured"

    def begin(self) -> None:
        return None

    def end(self, token: None) -> VisitWindow:
        if self.gpu is None:
            return VisitWindow(not_measured=self.reason)
        r = self.gpu.clock_slowdown()
        if not r.ok:
            return VisitWindow(not_measured=f"NVML clock event reasons: {r.reason}")
        disturbing = [name for name in r.value.split(", ") if name and name not in WORKLOAD_SLOWDOWNS]
        reasons = (f"GPU clocks slowed: {', '.join(disturbing)}",) if disturbing else ()
        return VisitWindow(gpu_slowdown=r.value or None, reasons=reasons)


class NullProbe:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def begin(self) -> None:
        return None

    def end(self, token: None) -> VisitWindow:
        return VisitWindow(not_measured=self.reason)


def cpu_pressure(reader: Reader | None = None) -> dict[str, Any]:
    """/proc/pressure/cpu (PSI), or the reason it is unreadable: stored with the run."""
    reader = reader or ProcReader()
    try:
        text = reader.read("/proc/pressure/cpu")
    except OSError as e:
        return {"reason": f"/proc/pressure/cpu unreadable: {e.strerror or type(e).__name__}"}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        out[kind] = {k: float(v) for k, v in (p.split("=") for p in pairs)}
    return out
