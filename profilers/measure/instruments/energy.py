"""Energy per call: a counter read around a loop of calls lasting at least a window.

Meters, in the order a run tries them:
- ``nvml_energy_counter``: NVML's total-energy counter (mJ, Volta and newer). It
  updates about every 100 ms, so windows are ≥ 1 s (5 s for the accurate preset);
- ``nvml_power_integration``: GPUs without the counter: the sampler's instant
  power integrated over the window, and said so;
- ``rapl_package``: CPU package counters when readable;
otherwise a NullMeter whose reason is shown as N/A. Nothing here estimates.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...sensors.host import Rapl
from ...sensors.nvml import Gpu
from ...sensors.sampler import Sampler


class Meter(Protocol):
    method: str
    reason: str | None

    def begin(self) -> Any: ...

    def end(self, token: Any) -> float:
        """Joules since ``begin`` returned ``token``."""
        ...


class MeterError(RuntimeError):
    """A reading failed during a window: the point's energy becomes N/A with this reason, its timing stays."""


class NvmlCounterMeter:
    """NVML's total-energy counter (mJ). It updates about every 100 ms, so a window starts on a tick: the
    counter is polled until it changes, and the window's clock starts there."""

    method = "nvml_energy_counter"
    tick_timeout_s = 0.5

    def __init__(self, gpu: Gpu, clock: Callable[[], float] = time.perf_counter) -> None:
        self.gpu = gpu
        self.clock = clock
        r = gpu.energy_mj()
        self.reason = None if r.ok else f"NVML energy counter: {r.reason}"

    def _read(self) -> int:
        r = self.gpu.energy_mj()
        if not r.ok:
            raise MeterError(f"NVML energy counter failed mid-window: {r.reason}")
        return int(r.value)

    def begin(self) -> int:
        first = self._read()
        end = self.clock() + self.tick_timeout_s
        while self.clock() < end:  # align to the counter's next update
            v = self._read()
            if v != first:
                return v
        return first

    def end(self, token: int) -> float:
        return (self._read() - token) / 1000.0


def integrate_power(ts: Sequence[float], watts: Sequence[float | None], t0: float, t1: float) -> float | None:
    """Trapezoidal ∫P dt over [t0, t1] from samples; None when fewer than two samples fall inside."""
    pts = [(t, w) for t, w in zip(ts, watts) if w is not None and t0 <= t <= t1]
    if len(pts) < 2:
        return None
    joules = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(pts))
    # extend the first and last sample to the window edges
    joules += (pts[0][0] - t0) * pts[0][1] + (t1 - pts[-1][0]) * pts[-1][1]
    return joules


class SampledPowerMeter:
    """Integrates the sampler's instant GPU power: for GPUs without the energy counter."""

    method = "nvml_power_integration"

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.reason = None if sampler.gpu is not None else "no GPU is being sampled"

    def begin(self) -> float:
        return self.sampler.now_s()

    def end(self, token: float) -> float:
        t1 = self.sampler.now_s()
        time.sleep(self.sampler.period_s * 1.5)  # let one more sample land past the window
        cols = self.sampler.columns
        j = integrate_power(cols["t_s"], cols.get("gpu_power_instant_w", []), token, t1)
        if j is None:
            raise RuntimeError("too few power samples in the window: raise the window or the sample rate")
        return j


class RaplMeter:
    method = "rapl_package"

    def __init__(self, rapl: Rapl) -> None:
        self.rapl = rapl
        self.reason = None if rapl.available else f"RAPL: {rapl.reason}"

    def begin(self) -> list[int]:
        return self.rapl.read_uj()

    def end(self, token: list[int]) -> float:
        return self.rapl.delta_j(token, self.rapl.read_uj())


class NullMeter:
    method = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def begin(self) -> None:
        raise RuntimeError(self.reason)

    def end(self, token: Any) -> float:
        raise RuntimeError(self.reason)


def choose_meter(device_type: str, gpu: Gpu | None, sampler: Sampler | None, rapl: Rapl | None) -> Meter:
    """The best honest meter for the device, or a NullMeter that says why there is none."""
    if device_type == "cuda":
        if gpu is None:
            return NullMeter("no NVML device for this GPU (driver missing or UUID not matched)")
        counter = NvmlCounterMeter(gpu)
        if counter.reason is None:
            return counter
        if sampler is not None and gpu.power_instant_w().ok:
            return SampledPowerMeter(sampler)
        return NullMeter(f"{counter.reason}; instant power unavailable too")
    if rapl is not None and rapl.available:
        return RaplMeter(rapl)
    return NullMeter(f"CPU energy: {rapl.reason if rapl else 'RAPL not probed'}")


@dataclass(frozen=True)
class EnergyResult:
    method: str
    window_s: float
    repeats: int
    calls_per_repeat: int
    mj_per_call: float
    j_per_mtok: float
    mean_power_w: float
    spread_pct: float  # (max - min) / median of per-call energy over repeats
    dynamic_mj_per_call: float | None  # total minus idle power × time
    idle_power_w: float | None
    loop_us_per_call: float | None = None  # the energy loop's own time per call (unflushed, back to back)

    def to_fields(self) -> dict[str, Any]:
        return {
            "energy_method": self.method,
            "energy_window_s": self.window_s,
            "energy_repeats": self.repeats,
            "energy_mj_per_call": self.mj_per_call,
            "energy_j_per_mtok": self.j_per_mtok,
            "energy_mean_power_w": self.mean_power_w,
            "energy_spread_pct": self.spread_pct,
            "energy_dynamic_mj_per_call": self.dynamic_mj_per_call,
        }


def measure(
    call: Callable[[], Any],
    meter: Meter,
    tokens: int,
    window_s: float = 1.0,
    repeats: int = 3,
    pause_s: float = 0.25,
    idle_power_w: float | None = None,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    seed: int = 0,
) -> EnergyResult:
    """Loop ``call`` for ≥ ``window_s`` per repeat, read the meter around each loop.

    Pauses between repeats are drawn at random (seeded) between ½ and 1½ × ``pause_s``, so repeats do not
    lock onto the power sensor's own sampling period. The loop runs unflushed and back to back, so its µs
    per call (``loop_us_per_call``) is stored beside the energy: for a small launch-bound kernel it is a
    different workload from the flushed p50.
    """
    if meter.reason:
        raise RuntimeError(meter.reason)
    call()
    sync()
    t = clock()
    for _ in range(3):
        call()
    sync()
    one_s = max((clock() - t) / 3, 1e-7)
    n = max(1, math.ceil(window_s / one_s))
    rng = random.Random(seed)
    per_call_j, powers, dynamic, loop_s = [], [], [], []
    for r in range(repeats):
        if r:
            sleep(pause_s * rng.uniform(0.5, 1.5))
        sync()
        token = meter.begin()
        t0 = clock()
        for _ in range(n):
            call()
        sync()
        dt = clock() - t0
        joules = meter.end(token)
        per_call_j.append(joules / n)
        powers.append(joules / dt)
        loop_s.append(dt / n)
        if idle_power_w is not None:
            dynamic.append((joules - idle_power_w * dt) / n)
    med = statistics.median(per_call_j)
    return EnergyResult(
        method=meter.method,
        window_s=window_s,
        repeats=repeats,
        calls_per_repeat=n,
        mj_per_call=med * 1e3,
        j_per_mtok=med / tokens * 1e6,
        mean_power_w=statistics.fmean(powers),
        spread_pct=100.0 * (max(per_call_j) - min(per_call_j)) / med if med > 0 else math.inf,
        dynamic_mj_per_call=statistics.median(dynamic) * 1e3 if dynamic else None,
        idle_power_w=idle_power_w,
        loop_us_per_call=statistics.median(loop_s) * 1e6,
    )


def idle_power(
    meter: Meter,
    seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> float | None:
    """Mean power while nothing runs, for dynamic energy; None when the meter cannot say."""
    if meter.reason:
        return None
    token = meter.begin()
    t0 = clock()
    sleep(seconds)
    dt = clock() - t0
    return meter.end(token) / dt
