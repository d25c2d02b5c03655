"""CUDA paths proven without a GPU: fakes at the seams (torch module, NVML device, timer)."""

import pytest
import torch
from conftest import measure_one
from test_timing import FakeClock, FakeCudaTorch

from profilers.catalog import Config
from profilers.measure.instruments import energy
from profilers.measure.instruments.timing import CpuTimer, CudaGraphTimer, GraphRecordedNothing
from profilers.measure.sweep.point import Context
from profilers.sensors import Reading, missing
from profilers.spec import Point, SweepSpec


class FlakyGpu:
    """An NVML device whose energy counter answers ``good`` reads, then fails (a transient NVML error)."""

    def __init__(self, good: int):
        self.good = good
        self.reads = 0

    def energy_mj(self):
        self.reads += 1
        if self.reads > self.good:
            return missing("NVML_ERROR_UNKNOWN (transient)")
        return Reading(1000 * self.reads)


def _ctx(timer, meter=None, **spec_kw) -> Context:
    """A point's context for tests that read its record (the widest interval target, as in test_measure)."""
    spec_kw = {"ci_target_pct": 50.0, **spec_kw}
    spec = SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((32, 64),), **spec_kw)
    return Context(spec, torch.device("cpu"), Config(), timer, copy_gbps=10.0, meter=meter)


def test_energy_reading_failing_mid_loop_keeps_the_timing_and_says_why():
    meter = energy.NvmlCounterMeter(FlakyGpu(good=3))
    meter.tick_timeout_s = 0.0
    assert meter.reason is None  # the counter worked when the run started
    r = measure_one(
        Point("rmsnorm", "native", "float32", 32, 64, "fwd"),
        _ctx(CpuTimer(1, 5, threads=1), meter=meter, energy=True, energy_window_s=0.2, energy_repeats=2),
    )
    assert r.status == "ok" and r.p50_us and r.p50_us > 0  # the timing survived
    assert r.energy_mj_per_call is None and "failed mid-window" in r.energy_note


class GraphTimerLike(CpuTimer):
    method = "cuda_graph"


@pytest.mark.parametrize("mode", ["bwd", "fwdbwd"])
def test_backward_with_cuda_graphs_is_refused_with_a_reason(mode):
    r = measure_one(Point("rmsnorm", "native", "float32", 32, 64, mode), _ctx(GraphTimerLike(1, 5)))
    assert r.status == "skipped" and "forward only" in r.error and r.p50_us is None


class GraphTorch(FakeCudaTorch):
    """FakeCudaTorch plus streams and graph capture; a captured graph replays nothing (it recorded nothing)."""

    def __init__(self, clock):
        super().__init__(clock)
        outer = self

        class Stream:
            def __init__(self, device=None):
                self.device = device

            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                pass  # nothing was recorded: no time passes

        class Capture:
            def __init__(self, graph, stream=None):
                outer.capture_stream = stream

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

        class Ctx:
            def __init__(self, stream):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

        self.cuda.Stream = Stream
        self.cuda.current_stream = lambda device=None: Stream(device)
        self.cuda.CUDAGraph = Graph
        self.cuda.graph = Capture
        self.cuda.stream = Ctx


def test_a_graph_that_recorded_nothing_never_produces_a_time():
    clock = FakeClock(seed=3, mean_s=100e-6, jitter=0.0)
    fake = GraphTorch(clock)
    timer = CudaGraphTimer(1.0, 5.0, "cuda:1", torch_mod=fake, replay_kernels=lambda graph: 0)
    with pytest.raises(GraphRecordedNothing, match="did not record the work"):
        timer.measure(clock.kernel)
    assert fake.capture_stream.device == "cuda:1"  # captured on a side stream of the sweep's device
