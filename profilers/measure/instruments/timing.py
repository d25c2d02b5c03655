"""Timers and sample statistics.

A timer turns a zero-argument callable into raw per-call samples (µs); the
statistics are derived from those samples, never the other way round. The
method is part of the result: on one H100 three methods gave 153, 121 and 116 µs
for the same kernel, so every stored figure names the method that produced it.

- ``cpu_blocks``: fixed thread count; warm up for a budget, then time blocks of
  calls (each block ≥ 1 ms) until the measurement budget is spent; one sample per
  block = block time / calls.
- ``cuda_event_flush_queued``: one pair of CUDA events per call, L2 flushed before
  each call so it holds no input (triton's do_bench method), each call queued behind a
  spin kernel so a slow host cannot leave the GPU waiting inside it: cache state
  ``cold`` (the default); ``cuda_event_flush``: the same without the spin, a call
  timed as launched (a call whose launch outlasts its kernels includes the launch);
  ``cuda_event_queued``: blocks of calls back to back, queued behind a spin kernel: ``warm``.
- ``cuda_graph``: calls captured in a CUDA graph and replayed: launch-free time,
  cold (one call per replay, flushed) or warm (many calls per replay).

The cache state is stored with every point: a warm time is judged against an
L2 ceiling, a cold one against device memory.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...analysis.noise import is_noisy
from ...spec import CUDA_LAUNCHES  # queued (behind a spin kernel, the default) or direct (as launched)

MIN_SAMPLES = 5
MAX_SAMPLES = 100_000
L2_FLUSH_BYTES = 256 * 1024 * 1024
# calls per warm block: while the spin kernel runs, the CPU enqueues the whole block; its kernels must fit
# CUDA's launch queue (about a thousand entries), or the CPU waits on a full queue in the middle of the block
# and the rest of the block is launched at the CPU's pace again (an eager composite launches up to 14 per call)
WARM_BLOCK_MAX = 64


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
    # CUDA: the host's time to launch one call (µs, the least of three): a call whose launch takes longer than
    # its GPU time keeps the GPU waiting when nothing is queued ahead of it (launch-bound on this host)
    dispatch_us: float | None = None

    @property
    def stats(self) -> Stats:
        return summarize(self.samples_us)


class Timer(Protocol):
    """Turns a callable into raw samples. ``warmup_ms`` and ``budget_ms`` override the timer's own for one
    call (an interleaved round's visit is a short re-warmup and its share of the point's budget)."""

    method: str
    cache_state: str

    def measure(
        self, fn: Callable[[], Any], warmup_ms: float | None = None, budget_ms: float | None = None
    ) -> Measurement: ...


class CpuTimer:
    """Blocks of calls until a time budget; ``clock`` is a seam for tests.

    The cache is warm: calls run back to back, as layers do inside a model step.
    """

    method = "cpu_blocks"
    cache_state = "warm"

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

    def measure(
        self, fn: Callable[[], Any], warmup_ms: float | None = None, budget_ms: float | None = None
    ) -> Measurement:
        clock = self.clock
        warmup_s = self.warmup_s if warmup_ms is None else warmup_ms / 1e3
        budget_s = self.budget_s if budget_ms is None else budget_ms / 1e3
        # warmup: at least one call, then until the warmup budget is spent
        t0 = clock()
        fn()
        one = max(clock() - t0, 1e-9)
        warm_end = t0 + warmup_s
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
            if len(samples) >= self.min_samples and clock() - start >= budget_s:
                break
        return Measurement(self.method, tuple(samples), block, self.threads)


FLUSH_METHODS = {
    "zero": "a 256 MB buffer zeroed before each call (triton's do_bench)",
    "read": "a 256 MB buffer summed before each call (reads only: no dirty lines left to write back)",
}


class _CudaTimer:
    """Shared by the CUDA timers: budgets, the device, its stream, the L2 flush and timing with event pairs.

    Every event is recorded on the *sweep device's* current stream (not the process's current device), so a
    sweep on cuda:1 times cuda:1's work; the runner also makes that device current for the whole sweep.
    ``torch_mod`` is a seam: tests pass a fake module with ``cuda.Event``, ``cuda.current_stream`` and
    ``cuda.synchronize``.
    """

    method = ""

    def __init__(
        self,
        warmup_ms: float,
        budget_ms: float,
        device: Any,
        torch_mod: Any = None,
        cache_state: str = "cold",
        flush: str = "zero",
        host_clock: Callable[[], float] = time.perf_counter,
        launch: str = "queued",
        min_samples: int = MIN_SAMPLES,
    ) -> None:
        if torch_mod is None:
            import torch as torch_mod
        if cache_state not in ("cold", "warm"):
            raise ValueError(f"cache_state must be cold or warm, got {cache_state!r}")
        if flush not in FLUSH_METHODS:
            raise ValueError(f"flush must be one of {', '.join(FLUSH_METHODS)}, got {flush!r}")
        if launch not in CUDA_LAUNCHES:
            raise ValueError(f"launch must be one of {', '.join(CUDA_LAUNCHES)}, got {launch!r}")
        self.launch = launch
        self.min_samples = min_samples  # per measure() call: a whole model's step is one sample a visit
        self.torch = torch_mod
        self.warmup_ms = warmup_ms
        self.budget_ms = budget_ms
        self.device = device
        self.cache_state = cache_state
        self.flush_method = flush
        self._flush_buf: Any = None
        self.host_clock = host_clock
        self._sleep_cycles_per_ms: float | None = None

    def flush(self) -> None:
        """Empty L2 before a cold call; outside the timed region."""
        if self._flush_buf is None:
            dtype = self.torch.int32 if self.flush_method == "zero" else self.torch.float32
            self._flush_buf = self.torch.empty(L2_FLUSH_BYTES // 4, dtype=dtype, device=self.device)
            if self.flush_method == "read":
                self._flush_buf.fill_(1.0)
        if self.flush_method == "zero":
            self._flush_buf.zero_()
        else:
            self._flush_buf.sum()

    def _enqueue_s(self, body: Callable[[], Any]) -> float:
        """The host's time to enqueue ``body`` on an idle GPU: the least of three, so one stall does not stick."""
        times = []
        for _ in range(3):
            self.torch.cuda.synchronize(self.device)
            t0 = self.host_clock()
            body()
            times.append(self.host_clock() - t0)
        self.torch.cuda.synchronize(self.device)
        return min(times)

    def _stream(self) -> Any:
        return self.torch.cuda.current_stream(self.device)

    def _event_times_ms(self, n: int, body: Callable[[], Any], before: Callable[[], Any] | None = None) -> list:
        torch = self.torch
        stream = self._stream()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        for s, e in zip(starts, ends):
            if before is not None:
                before()  # outside the timed region
            s.record(stream)
            body()
            e.record(stream)
        torch.cuda.synchronize(self.device)
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]

    def _prefill(self, enqueue_s: float) -> Callable[[], None] | None:
        """A spin kernel (``torch.cuda._sleep``) that keeps the GPU busy while the CPU enqueues a block, so the
        block's calls run back to back at the GPU's pace instead of the CPU's launch rate. Its length is 1.5×
        the measured enqueue time plus 50 µs, in GPU cycles calibrated once with events. None when this torch
        has no spin kernel (the block then starts as soon as its first call is launched)."""
        sleep = getattr(self.torch.cuda, "_sleep", None)
        if sleep is None:
            return None
        if self._sleep_cycles_per_ms is None:
            self._sleep_cycles_per_ms = self._calibrate_sleep(sleep)
        cycles = int(self.spin_ms(enqueue_s) * self._sleep_cycles_per_ms)
        return lambda: sleep(cycles)

    @staticmethod
    def spin_ms(enqueue_s: float) -> float:
        """How long the spin kernel ahead of a block runs: 1.5× the block's enqueue time plus 50 µs."""
        return 1.5 * enqueue_s * 1e3 + 0.05

    def _calibrate_sleep(self, sleep: Callable[[int], None]) -> float:
        """GPU cycles per millisecond of the spin kernel: the difference of a long and a short spin (a fixed
        launch cost cancels), after one spin that pays any first-use loading, clamped to 0.3-5 GHz."""
        sleep(1000)
        self.torch.cuda.synchronize(self.device)
        short, long_ = 200_000, 2_000_000
        ms_short = self._event_times_ms(1, lambda: sleep(short))[0]
        ms_long = self._event_times_ms(1, lambda: sleep(long_))[0]
        per_ms = (long_ - short) / max(ms_long - ms_short, 1e-6)
        return min(max(per_ms, 0.3e6), 5e6)

    def _budgets(self, warmup_ms: float | None, budget_ms: float | None) -> tuple[float, float]:
        return (self.warmup_ms if warmup_ms is None else warmup_ms, self.budget_ms if budget_ms is None else budget_ms)


class CudaEventTimer(_CudaTimer):
    """CUDA events around the calls. Cold: one event pair per call, L2 flushed before each; with ``launch``
    queued (the default) a spin kernel sized to the call's launch time runs ahead of each flush, so the host has
    launched the whole call before the GPU reaches it and the sample is the GPU's time for the call; direct
    leaves the spin out (triton's do_bench: the flush alone keeps the GPU busy while the next call launches,
    which hides a short launch, not one longer than the flush). On an H200 host a compiled LayerNorm
    forward+backward (8192×4096 bf16) took 721 µs as launched for 152 µs of kernels: its launch, not the GPU.
    Warm: one event pair around a block of back-to-back calls (up to a millisecond of work, at most
    ``WARM_BLOCK_MAX`` calls), each sample the block's time over its calls, with a spin kernel queued ahead of
    each block so the CPU has enqueued the whole block before the GPU reaches it. Without work queued ahead
    the events time the CPU's launch rate, not the kernel: on an H200 a 16 MB LayerNorm timed 43 µs warm with
    an event pair per call and 29 µs with blocks alone, against 18.6 µs cold. Every measurement carries the
    host's launch time per call (``dispatch_us``)."""

    @property
    def method(self) -> str:  # type: ignore[override]
        if self.cache_state == "warm":
            return "cuda_event_queued"
        queued = self.launch == "queued" and getattr(self.torch.cuda, "_sleep", None) is not None
        return "cuda_event_flush_queued" if queued else "cuda_event_flush"

    def measure(
        self, fn: Callable[[], Any], warmup_ms: float | None = None, budget_ms: float | None = None
    ) -> Measurement:
        warm_ms, budget = self._budgets(warmup_ms, budget_ms)
        self.torch.cuda.synchronize(self.device)
        cold = self.cache_state == "cold"

        def five() -> None:  # estimate with 5 calls, flush included, as do_bench does
            for _ in range(5):
                if cold:
                    self.flush()
                fn()

        est_ms = max(self._event_times_ms(1, five)[0] / 5, 1e-3)
        n_warm = max(1, int(warm_ms / est_ms))
        for _ in range(n_warm):
            fn()
        dispatch_s = self._enqueue_s(fn)
        if cold:
            prefill, spin_ms = None, 0.0
            if self.launch == "queued":
                ahead_s = dispatch_s + self._enqueue_s(self.flush)  # what the spin must cover: flush and call
                prefill = self._prefill(ahead_s)
                spin_ms = self.spin_ms(ahead_s) if prefill is not None else 0.0

            def before() -> None:  # outside the timed region: the spin (when queued), then the flush
                if prefill is not None:
                    prefill()
                self.flush()

            n_rep = min(MAX_SAMPLES, max(self.min_samples, int(budget / (est_ms + spin_ms))))  # the spin costs too
            times = self._event_times_ms(n_rep, fn, before=before)
            return Measurement(self.method, tuple(t * 1e3 for t in times), 1, dispatch_us=dispatch_s * 1e6)
        block = max(1, min(WARM_BLOCK_MAX, math.ceil(1.0 / est_ms)))

        def calls() -> None:
            for _ in range(block):
                fn()

        enqueue_s = self._enqueue_s(calls)
        prefill = self._prefill(enqueue_s)
        spin_ms = self.spin_ms(enqueue_s) if prefill is not None else 0.0
        n_rep = min(MAX_SAMPLES, max(self.min_samples, int(budget / (est_ms * block + spin_ms))))  # the spin costs too
        times = self._event_times_ms(n_rep, calls, before=prefill)
        return Measurement(self.method, tuple(t * 1e3 / block for t in times), block, dispatch_us=dispatch_s * 1e6)


class GraphRecordedNothing(RuntimeError):
    """A captured CUDA graph replays fewer kernels than the calls it should hold: it must not give a time."""


class CudaGraphTimer(_CudaTimer):
    """Calls captured in a CUDA graph and replayed: launch-free time.

    warm: one graph of many calls (about 1 ms of work), each sample one replay divided by its calls.
    cold: a graph of one call, replayed after an L2 flush outside the events.
    Capture happens on a side stream of the sweep's device. Before any time is kept, one replay is profiled:
    a graph that recorded fewer kernels than calls raises ``GraphRecordedNothing``. Forward only: the runner
    refuses backward modes (autograd cannot be captured from outputs made outside the capture).
    """

    method = "cuda_graph"

    def __init__(self, *args: Any, replay_kernels: Callable[[Any], int] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.replay_kernels = replay_kernels or self._profiled_kernels

    def _profiled_kernels(self, graph: Any) -> int:
        from .kernels import count_device_kernels

        return count_device_kernels(graph.replay, self.device)

    def measure(
        self, fn: Callable[[], Any], warmup_ms: float | None = None, budget_ms: float | None = None
    ) -> Measurement:
        torch = self.torch
        warm_ms, budget = self._budgets(warmup_ms, budget_ms)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm up on a side stream, as capture requires
            for _ in range(3):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)
        per_call_ms = max(self._event_times_ms(1, fn)[0], 1e-3)
        calls = 1 if self.cache_state == "cold" else max(1, min(1000, int(1.0 / per_call_ms)))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(calls):
                fn()
        kernels = self.replay_kernels(graph)
        if kernels < calls:
            # the profiler may not see kernels launched from a graph: then the replay must take at least a
            # fifth of the same calls launched one by one, or it recorded nothing
            replay = min(self._event_times_ms(3, graph.replay))
            if replay < 0.2 * per_call_ms * calls:
                raise GraphRecordedNothing(
                    f"the CUDA graph replays {kernels} kernel(s) in {replay * 1e3:.1f} µs for {calls} captured "
                    f"call(s) of {per_call_ms * 1e3:.1f} µs: it did not record the work, so no time is kept; "
                    "time this point with the event timer"
                )
        replay_ms = max(per_call_ms * calls, 1e-3)
        for _ in range(max(1, int(warm_ms / replay_ms))):
            graph.replay()
        n_rep = min(10_000, max(self.min_samples, int(budget / replay_ms)))
        before = self.flush if self.cache_state == "cold" else None
        times = self._event_times_ms(n_rep, graph.replay, before=before)
        del graph
        return Measurement(self.method, tuple(t * 1e3 / calls for t in times), calls)
