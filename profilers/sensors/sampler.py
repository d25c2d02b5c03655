"""A background thread that samples GPU and host sensors at a fixed period.

GPU power is sampled as NVML's instant field (the 1 s average is recorded too,
labelled as such). The series is kept in columnar form (one list per reading)
so a run's telemetry stores compactly; ``summary(t0, t1)`` gives mean and max of
every reading inside one point's window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .host import Host
from .nvml import Gpu

GPU_READINGS = (
    "power_instant_w",
    "power_avg_1s_w",
    "sm_clock_mhz",
    "memory_used_bytes",
    "utilization_pct",
    "temperature_c",
)
HOST_READINGS = ("cpu_util_pct", "process_rss_bytes")


class Sampler:
    """Samples readings every ``period_s`` until stopped. ``clock`` is a seam for tests."""

    def __init__(
        self,
        gpu: Gpu | None,
        host: Host | None,
        period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.gpu = gpu
        self.host = host
        self.period_s = period_s
        self.clock = clock
        self.t0 = clock()
        self.columns: dict[str, list[Any]] = {"t_s": []}
        self.reasons: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def readers(self) -> dict[str, Callable[[], Any]]:
        out: dict[str, Callable[[], Any]] = {}
        if self.gpu is not None:
            out.update({f"gpu_{k}": getattr(self.gpu, k) for k in GPU_READINGS})
        if self.host is not None:
            out.update({f"host_{k}": getattr(self.host, k) for k in HOST_READINGS})
        return out

    def sample_once(self) -> None:
        row: dict[str, Any] = {"t_s": round(self.clock() - self.t0, 4)}
        for name, read in self.readers().items():
            r = read()
            row[name] = r.value
            if r.value is None and r.reason:
                self.reasons.setdefault(name, r.reason)
        with self._lock:
            n = len(self.columns["t_s"])
            for k, v in row.items():
                self.columns.setdefault(k, [None] * n).append(v)

    def _loop(self) -> None:
        next_t = self.clock()
        while not self._stop.is_set():
            self.sample_once()
            next_t += self.period_s
            self._stop.wait(max(0.0, next_t - self.clock()))

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, name="normscope-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def now_s(self) -> float:
        return self.clock() - self.t0

    def summary(self, t_start: float, t_end: float) -> dict[str, Any]:
        """Mean and max of each reading sampled in [t_start, t_end] (seconds since start)."""
        with self._lock:
            ts = list(self.columns["t_s"])
            cols = {k: list(v) for k, v in self.columns.items() if k != "t_s"}
        idx = [i for i, t in enumerate(ts) if t_start <= t <= t_end]
        out: dict[str, Any] = {"samples": len(idx), "window_s": round(t_end - t_start, 4)}
        for k, vals in cols.items():
            xs = [vals[i] for i in idx if i < len(vals) and vals[i] is not None]
            if xs:
                out[k] = {"mean": sum(xs) / len(xs), "max": max(xs)}
            else:
                out[k] = None
                if k in self.reasons:
                    out[f"{k}_reason"] = self.reasons[k]
        return out

    def series(self, decimals: int = 3) -> dict[str, Any]:
        """The whole run's series, columnar and rounded, for storage."""
        with self._lock:
            cols = {k: list(v) for k, v in self.columns.items()}
        n = len(cols["t_s"])
        out: dict[str, Any] = {"period_s": self.period_s, "reasons": dict(self.reasons)}
        for k, col in cols.items():
            padded = col + [None] * (n - len(col))
            if all(x is None for x in padded):
                continue
            out[k] = [round(x, decimals) if isinstance(x, float) else x for x in padded]
        return out
