"""Timers and sample statistics.

A timer turns a zero-argument callable into raw per-call samples (µs); the
statistics are derived from those samples, never the other way round. The
method is part of the result: on one H100 three methods gave 153, 121 and 116 µs
for the same kernel, so every stored figure names the method that produced it.

- ``cpu_blocks``: fixed thread count; warm up for a budget, then time blocks of
  calls (each block ≥ 1 ms) until the measurement budget is spent; one sample per
  block = block time / calls.
- ``cuda_event_flush``: one pair of CUDA events per call, a 256 MB buffer zeroed
  before each call so L2 holds no input (triton's do_bench method).
- ``cuda_graph``: calls captured in a CUDA graph and replayed: launch-free time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..analysis.noise import is_noisy

MIN_SAMPLES = 5
MAX_SAMPLES = 100_000
L2_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Stats:
    """Summary of raw per-call samples in microseconds."""

    n: int
    p20_us: float
    p50_us: float
    p80_us: float
    mean_us: float
    iqr_us: float
    min_us: float
    max_us: float

    @property
    def noisy(self) -> bool:
        return is_noisy(self.iqr_us, self.p50_us)


def quantile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_vals:
        raise ValueError("no samples")
    pos = (len(sorted_vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def summarize(samples_us: Sequence[float]) -> Stats:
    if not samples_us:
        raise ValueError("cannot summarize zero samples")
    s = sorted(float(v) for v in samples_us)
    if any(not math.isfinite(v) or v < 0 for v in s):
        raise ValueError("samples must be finite and non-negative")
    return Stats(
        n=len(s),
        p20_us=quantile(s, 0.2),
        p50_us=quantile(s, 0.5),
        p80_us=quantile(s, 0.8),
        mean_us=statistics.fmean(s),
        iqr_us=quantile(s, 0.75) - quantile(s, 0.25),
        min_us=s[0],
        max_us=s[-1],
    )


@dataclass(frozen=True)
class Measurement:
    """Raw samples plus how they were taken."""

    method: str
    samples_us: tuple[float, ...]
    calls_per_sample: int
    threads: int | None = None

    @property
    def stats(self) -> Stats:
        return summarize(self.samples_us)


class Timer(Protocol):
    method: str

    def measure(self, fn: Callable[[], Any]) -> Measurement: ...


class CpuTimer:
    """Blocks of calls until a time budget; ``clock`` is a seam for tests."""

    method = "cpu_blocks"

    def __init__(
        self,
        warmup_ms: float,
        budget_ms: float,
        threads: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        min_block_s: float = 1e-3,
        min_samples: int = MIN_SAMPLES,
    ) -> None:
        self.warmup_s = warmup_ms / 1e3
        self.budget_s = budget_ms / 1e3
        self.threads = threads
        self.clock = clock
        self.min_block_s = min_block_s
        self.min_samples = min_samples

    def measure(self, fn: Callable[[], Any]) -> Measurement:
        clock = self.clock
        # warmup: at least one call, then until the warmup budget is spent
        t0 = clock()
        fn()
        one = max(clock() - t0, 1e-9)
        warm_end = t0 + self.warmup_s
        while clock() < warm_end:
            t = clock()
            fn()
            one = min(one, max(clock() - t, 1e-9))
        block = max(1, math.ceil(self.min_block_s / one))
        samples: list[float] = []
        start = clock()
        while len(samples) < MAX_SAMPLES:
            t = clock()
            for _ in range(block):
                fn()
            samples.append((clock() - t) / block * 1e6)
            if len(samples) >= self.min_samples and clock() - start >= self.budget_s:
                break
        return Measurement(self.method, tuple(samples), block, self.threads)


class _CudaTimer:
    """Shared by the CUDA timers: budgets, the device, and timing ``body`` with one event pair per run."""

    method = ""

    def __init__(self, warmup_ms: float, budget_ms: float, device: Any, torch_mod: Any = None) -> None:
        if torch_mod is None:
            import torch as torch_mod
        self.torch = torch_mod  # a seam: tests pass a fake module with cuda.Event and cuda.synchronize
        self.warmup_ms = warmup_ms
        self.budget_ms = budget_ms
        self.device = device

    def _event_times_ms(self, n: int, body: Callable[[], Any], before: Callable[[], Any] | None = None) -> list:
        torch = self.torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for s, e in zip(starts, ends):
            if before is not None:
                before()  # outside the timed region
            s.record()
            body()
            e.record()
        torch.cuda.synchronize(self.device)
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]


class CudaEventTimer(_CudaTimer):
    """One pair of CUDA events per call, L2 flushed before each call."""

    method = "cuda_event_flush"

    def __init__(self, warmup_ms: float, budget_ms: float, device: Any, torch_mod: Any = None) -> None:
        super().__init__(warmup_ms, budget_ms, device, torch_mod)
        self.flush = self.torch.empty(L2_FLUSH_BYTES // 4, dtype=self.torch.int32, device=device)

    def measure(self, fn: Callable[[], Any]) -> Measurement:
        self.torch.cuda.synchronize(self.device)

        def flushed_five() -> None:  # estimate with 5 calls, flush included, as do_bench does
            for _ in range(5):
                self.flush.zero_()
                fn()

        est_ms = max(self._event_times_ms(1, flushed_five)[0] / 5, 1e-3)
        n_warm = max(1, int(self.warmup_ms / est_ms))
        n_rep = min(MAX_SAMPLES, max(MIN_SAMPLES, int(self.budget_ms / est_ms)))
        for _ in range(n_warm):
            fn()
        times = self._event_times_ms(n_rep, fn, before=self.flush.zero_)
        return Measurement(self.method, tuple(t * 1e3 for t in times), 1)


class CudaGraphTimer(_CudaTimer):
    """Calls captured in a CUDA graph; each sample is one replay divided by its calls."""

    method = "cuda_graph"

    def measure(self, fn: Callable[[], Any]) -> Measurement:
        torch = self.torch
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm up on a side stream, as capture requires
            for _ in range(3):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)
        per_call_ms = max(self._event_times_ms(1, fn)[0], 1e-3)  # sizes the graph at about 1 ms of work
        calls = max(1, min(1000, int(1.0 / per_call_ms)))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        replay_ms = max(per_call_ms * calls, 1e-3)
        for _ in range(max(1, int(self.warmup_ms / replay_ms))):
            graph.replay()
        n_rep = min(10_000, max(MIN_SAMPLES, int(self.budget_ms / replay_ms)))
        times = self._event_times_ms(n_rep, graph.replay)
        del graph
        return Measurement(self.method, tuple(t * 1e3 / calls for t in times), calls)
