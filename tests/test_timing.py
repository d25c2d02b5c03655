import random

import pytest

from profilers.measure.instruments.timing import CpuTimer, Stats, quantile, summarize


def test_summarize_known_samples():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s == Stats(n=5, p20_us=1.8, p50_us=3.0, p80_us=4.2, mean_us=3.0, iqr_us=2.0, min_us=1.0, max_us=5.0)
    assert s.noisy  # IQR/p50 = 0.67


def test_quantile_interpolates_like_numpy():
    vals = sorted([10.0, 20.0, 30.0, 40.0])
    assert quantile(vals, 0.5) == 25.0
    assert quantile(vals, 0.0) == 10.0 and quantile(vals, 1.0) == 40.0


def test_summarize_refuses_empty_and_non_finite():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_noise_flag_threshold():
    tight = summarize([100.0, 101.0, 99.0, 100.5, 99.5])
    assert not tight.noisy
    wide = summarize([100.0, 150.0, 60.0, 130.0, 80.0])
    assert wide.noisy


class FakeClock:
    """A clock that advances only when the fake kernel runs: each call costs a seeded random time."""

    def __init__(self, seed: int, mean_s: float, jitter: float):
        self.t = 0.0
        self.rng = random.Random(seed)
        self.mean_s = mean_s
        self.jitter = jitter
        self.calls = 0

    def __call__(self) -> float:
        return self.t

    def kernel(self) -> None:
        self.calls += 1
        self.t += self.mean_s * (1 + self.rng.uniform(-self.jitter, self.jitter))


def test_cpu_timer_blocks_and_budget_with_fake_clock():
    clock = FakeClock(seed=7, mean_s=100e-6, jitter=0.02)
    timer = CpuTimer(warmup_ms=5, budget_ms=50, threads=2, clock=clock)
    m = timer.measure(clock.kernel)
    # 100 µs calls, blocks of ≥1 ms → 10 calls per sample (the fastest warmup call is a little under 100 µs)
    assert m.calls_per_sample in (10, 11)
    s = m.stats
    assert s.p50_us == pytest.approx(100.0, rel=0.01)
    assert not s.noisy
    assert m.method == "cpu_blocks" and m.threads == 2
    # budget respected: ~50 ms of samples, so ~50 samples, never hundreds
    assert 40 <= s.n <= 60


def test_cpu_timer_takes_minimum_samples_for_slow_calls():
    clock = FakeClock(seed=1, mean_s=0.5, jitter=0.0)
    m = CpuTimer(warmup_ms=1, budget_ms=10, clock=clock).measure(clock.kernel)
    assert m.calls_per_sample == 1
    assert m.stats.n == 5  # MIN_SAMPLES even though one call exceeds the budget
    assert m.stats.p50_us == pytest.approx(500_000.0)


def test_cpu_timer_flags_noisy_kernels():
    clock = FakeClock(seed=3, mean_s=2e-3, jitter=0.6)
    m = CpuTimer(warmup_ms=1, budget_ms=200, clock=clock).measure(clock.kernel)
    assert m.stats.noisy


class FakeCudaTorch:
    """Stands in for torch in the CUDA timers: events read a fake clock that kernels advance, and remember
    which device's stream they were recorded on."""

    int32 = "int32"
    float32 = "float32"

    def __init__(self, clock: "FakeClock"):
        self.clock = clock
        self.flushes = 0
        self.recorded_on: list = []
        outer = self

        class Stream:
            def __init__(self, device):
                self.device = device

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                outer.recorded_on.append(getattr(stream, "device", "current device"))
                self.t = outer.clock.t

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3  # ms

        class Buffer:
            def zero_(self):
                outer.flushes += 1
                outer.clock.t += 50e-6  # the flush costs time, outside the timed region

        class Cuda:
            def synchronize(self, device=None):
                pass

            def current_stream(self, device=None):
                return Stream(device)

        self.cuda = Cuda()
        self.cuda.Event = Event
        self._buffer = Buffer

    def empty(self, *a, **k):
        return self._buffer()


def test_cuda_event_timer_logic_with_fake_events():
    from profilers.measure.instruments.timing import CudaEventTimer

    clock = FakeClock(seed=5, mean_s=200e-6, jitter=0.01)
    fake = FakeCudaTorch(clock)
    timer = CudaEventTimer(2.0, 20.0, "cuda:0", torch_mod=fake)
    m = timer.measure(clock.kernel)
    assert m.method == "cuda_event_flush" and m.calls_per_sample == 1
    # the 50 µs flush happens before each call but outside the events: p50 is the kernel's 200 µs
    assert m.stats.p50_us == pytest.approx(200.0, rel=0.02)
    # budget 20 ms at ~250 µs per estimated call (flush included) → ~80 samples, each preceded by a flush
    assert 60 <= m.stats.n <= 110
    assert fake.flushes >= m.stats.n + 5


def test_cuda_events_are_recorded_on_the_sweep_devices_stream():
    """A sweep on cuda:1 must time cuda:1's stream, not the process's current device (cuda:0)."""
    from profilers.measure.instruments.timing import CudaEventTimer

    clock = FakeClock(seed=1, mean_s=100e-6, jitter=0.0)
    fake = FakeCudaTorch(clock)
    CudaEventTimer(1.0, 5.0, "cuda:1", torch_mod=fake).measure(clock.kernel)
    assert fake.recorded_on and set(fake.recorded_on) == {"cuda:1"}


def test_warm_event_timer_never_flushes():
    from profilers.measure.instruments.timing import CudaEventTimer

    clock = FakeClock(seed=2, mean_s=100e-6, jitter=0.0)
    fake = FakeCudaTorch(clock)
    m = CudaEventTimer(1.0, 5.0, "cuda:0", torch_mod=fake, cache_state="warm").measure(clock.kernel)
    assert fake.flushes == 0 and m.method == "cuda_event_queued" and m.stats.p50_us == pytest.approx(100.0)
    assert m.calls_per_sample == 10  # blocks of about 1 ms: the GPU has work queued while calls are launched


class AsyncGpu:
    """A host and a GPU timeline: each launch costs the host ``launch_s``; the GPU runs each kernel after it
    was launched and after the previous one ended. Events read the GPU timeline, the host clock the host's."""

    def __init__(
        self,
        launch_s: float,
        kernel_s: float,
        with_sleep: bool = True,
        cycles_per_s: float = 1.9e9,
        kernels_per_call: int = 1,
        flush_s: float = 40e-6,
    ):
        self.host = 0.0
        self.gpu = 0.0
        self.launch_s, self.kernel_s, self.kernels_per_call = launch_s, kernel_s, kernels_per_call
        self.spins = 0
        outer = self

        class Buffer:  # the L2 flush: one GPU op
            def zero_(self):
                outer._run(flush_s)

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                outer.host += 1e-6
                outer.gpu = max(outer.gpu, outer.host)
                self.t = outer.gpu

            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3

        class Cuda:
            def synchronize(self, device=None):
                outer.host = max(outer.host, outer.gpu)

            def current_stream(self, device=None):
                return None

        self.cuda = Cuda()
        self.cuda.Event = Event
        if with_sleep:
            self.cuda._sleep = self._sleep
        self._cycles_per_s = cycles_per_s
        self.int32 = self.float32 = None
        self._buffer = Buffer

    def empty(self, *a, **k):
        return self._buffer()

    def _sleep(self, cycles: int) -> None:
        self.spins += 1
        self._run(cycles / self._cycles_per_s)

    def _run(self, gpu_s: float) -> None:
        self.host += self.launch_s
        self.gpu = max(self.gpu, self.host) + gpu_s

    def kernel(self) -> None:
        for _ in range(self.kernels_per_call):
            self._run(self.kernel_s)

    def clock(self) -> float:
        return self.host


def test_warm_blocks_time_the_kernel_not_the_cpus_launch_rate():
    from profilers.measure.instruments.timing import WARM_BLOCK_MAX, CudaEventTimer

    # a 6 µs kernel that takes the CPU 20 µs to launch (an H200 with a 16 MB LayerNorm looks like this)
    gpu = AsyncGpu(launch_s=20e-6, kernel_s=6e-6)
    m = CudaEventTimer(1.0, 20.0, "cuda:0", torch_mod=gpu, cache_state="warm", host_clock=gpu.clock).measure(gpu.kernel)
    assert m.stats.p50_us == pytest.approx(6.0, rel=0.05) and m.calls_per_sample <= WARM_BLOCK_MAX
    # the spins are sized to the enqueue time, not open-ended: warmup, calibration, spins and samples together
    # stay within about the 20 ms budget (a spin calibrated 10× too long would take over 60 ms)
    assert gpu.host < 0.03
    # without a spin kernel to queue behind, the same blocks time the launch rate: what the prefill prevents
    bare = AsyncGpu(launch_s=20e-6, kernel_s=6e-6, with_sleep=False)
    b = CudaEventTimer(1.0, 20.0, "cuda:0", torch_mod=bare, cache_state="warm", host_clock=bare.clock).measure(
        bare.kernel
    )
    assert b.stats.p50_us == pytest.approx(20.0, rel=0.05)


def test_cold_calls_queued_behind_a_spin_time_the_gpu_not_a_slow_launch():
    """A call of 6 kernels, 5 µs of GPU each, that takes the host 100 µs per launch (a compiled forward+backward
    on a slow host looks like this): as launched it times ~the launch; queued behind a spin, the GPU's 30 µs."""
    from profilers.measure.instruments.timing import CudaEventTimer

    def gpu():
        return AsyncGpu(launch_s=100e-6, kernel_s=5e-6, kernels_per_call=6, flush_s=40e-6)

    q = gpu()
    queued = CudaEventTimer(1.0, 20.0, "cuda:0", torch_mod=q, host_clock=q.clock).measure(q.kernel)
    assert queued.method == "cuda_event_flush_queued" and queued.calls_per_sample == 1
    assert queued.stats.p50_us == pytest.approx(30.0, rel=0.05)
    assert queued.dispatch_us == pytest.approx(600.0, rel=0.05)  # six launches of 100 µs
    assert q.spins >= queued.stats.n  # one spin ahead of every timed call
    d = gpu()
    direct = CudaEventTimer(1.0, 20.0, "cuda:0", torch_mod=d, host_clock=d.clock, launch="direct").measure(d.kernel)
    assert direct.method == "cuda_event_flush" and d.spins == 0
    # a 40 µs flush hides less than one 100 µs launch: the launches are in the sample
    assert direct.stats.p50_us > 500
    # a kernel far longer than its launch: both ways agree
    for launch in ("queued", "direct"):
        g = AsyncGpu(launch_s=10e-6, kernel_s=800e-6, flush_s=40e-6)
        m = CudaEventTimer(1.0, 20.0, "cuda:0", torch_mod=g, host_clock=g.clock, launch=launch).measure(g.kernel)
        assert m.stats.p50_us == pytest.approx(800.0, rel=0.02), launch


def test_cold_queued_without_a_spin_kernel_says_it_timed_calls_as_launched():
    from profilers.measure.instruments.timing import CudaEventTimer

    g = AsyncGpu(launch_s=100e-6, kernel_s=5e-6, kernels_per_call=6, with_sleep=False)
    m = CudaEventTimer(1.0, 10.0, "cuda:0", torch_mod=g, host_clock=g.clock).measure(g.kernel)
    assert m.method == "cuda_event_flush" and m.stats.p50_us > 400  # not called queued when it was not


def test_unknown_launch_mode_is_refused():
    from profilers.measure.instruments.timing import CudaEventTimer

    with pytest.raises(ValueError, match="launch must be one of queued, direct"):
        CudaEventTimer(1.0, 10.0, "cuda:0", torch_mod=AsyncGpu(1e-6, 1e-6), launch="later")


def test_launch_bound_is_said_only_where_the_timer_separated_launch_from_gpu_time():
    from profilers.measure.sweep.point import launch_bound_note

    note = launch_bound_note(716.0, 161.0, "cuda_event_flush_queued")
    assert note and "716 µs" in note and "4.4× its GPU time" in note
    assert launch_bound_note(100.0, 161.0, "cuda_event_flush_queued") is None
    assert launch_bound_note(716.0, 513.0, "cuda_event_flush") is None  # as launched: p50 holds part of it
