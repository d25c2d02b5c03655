"""CUDA paths, for real. Run on a GPU machine: `pytest -m gpu` (scripts/gpu_check.sh)."""

import pytest
import torch
from conftest import measure_one

from profilers.catalog import Config
from profilers.measure.instruments.timing import CudaEventTimer, CudaGraphTimer
from profilers.measure.sweep.point import Context
from profilers.spec import Point, SweepSpec
from profilers.store import Store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _ctx(timer, **kw):
    """A point's context for tests that read its record (the widest interval target, as in test_measure)."""
    kw = {"ci_target_pct": 50.0, **kw}
    spec = SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((8, 16),), device="cuda", **kw)
    return Context(spec, torch.device("cuda:0"), Config(), timer, copy_gbps=1000.0)


def test_cuda_sweep_end_to_end(tmp_path):
    from profilers.measure.sweep.runner import run_sweep

    spec = SweepSpec(
        variants=("layernorm", "rmsnorm", "dyt", "add_rmsnorm"),
        impls=("eager", "native", "compiled"),
        shapes=((4096, 4096),),
        dtypes=("bfloat16",),
        modes=("fwd", "fwdbwd", "bwd"),
        device="cuda",
        budget_ms=20,
        warmup_ms=5,
    )
    with Store(tmp_path / "g.db") as s:
        out = run_sweep(spec, s)
        run = s.get_run(out.run_id)
    assert out.status == "completed"
    assert run["copy_gbps"] > 500  # any datacenter GPU
    assert run["machine"]["gpu"]["name"] and run["machine"]["timing_method"] == "cuda_event_flush_queued"
    for r in out.results:
        if r.status == "skipped":
            continue
        # launch-bound compiled points at this shape can stay unstable (their CPU dispatch jitters): timed all the same
        assert r.status in ("ok", "imprecise", "unstable"), (r.variant, r.impl, r.mode, r.error)
        assert r.timing_method == "cuda_event_flush_queued" and r.extra["dispatch_us"] > 0
        assert r.peak_bytes and r.peak_bytes > 0
        assert 0 < r.roofline_pct < 110


def test_event_timer_agrees_with_do_bench():
    triton_testing = pytest.importorskip("triton.testing")
    x = torch.randn(16384, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.ones(4096, device="cuda", dtype=torch.bfloat16)

    def fn():
        return torch.nn.functional.layer_norm(x, (4096,), w)

    ours = CudaEventTimer(25, 200, torch.device("cuda:0")).measure(fn).stats.p50_us
    ref = triton_testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3
    assert ours == pytest.approx(ref, rel=0.10)


def test_cuda_graph_timer_removes_launch_overhead():
    x = torch.randn(1, 4096, device="cuda")
    w = torch.ones(4096, device="cuda")

    def fn():
        return torch.nn.functional.layer_norm(x, (4096,), w)

    dev = torch.device("cuda:0")  # like with like: both warm
    graph = CudaGraphTimer(10, 50, dev, cache_state="warm").measure(fn).stats.p50_us
    events = CudaEventTimer(10, 50, dev, cache_state="warm").measure(fn).stats.p50_us
    assert graph < events


def test_oom_is_recorded_on_the_point_not_raised(monkeypatch):
    # the footprint check would skip a point this big before allocating: let it try, so the OOM itself is caught
    monkeypatch.setattr("profilers.measure.sweep.group.available_bytes", lambda device: (1 << 50, "patched"))
    free, _ = torch.cuda.mem_get_info()
    tokens = int(free // (4096 * 2) * 2)  # about twice the free memory in bf16
    r = measure_one(
        Point("rmsnorm", "native", "bfloat16", tokens, 4096, "fwd"), _ctx(CudaEventTimer(5, 10, torch.device("cuda:0")))
    )
    assert r.status == "failed" and "out of memory" in r.error
    ok = measure_one(
        Point("rmsnorm", "native", "bfloat16", 1024, 4096, "fwd"), _ctx(CudaEventTimer(5, 10, torch.device("cuda:0")))
    )
    assert ok.status == "ok"  # the next point still runs


def test_provenance_matches_nvml_by_uuid():
    from profilers.measure.machine import provenance

    gpu = provenance.machine("cuda:0")["gpu"]
    assert gpu["name"]
    if "nvml_reason" not in gpu:
        assert gpu["uuid"] and gpu["power_limit_w"] > 0


def test_cuda_kernel_breakdown_counts_device_kernels():
    from profilers.measure.instruments.kernels import breakdown
    from profilers.measure.subjects.variants import VARIANTS, build

    cfg = Config()
    dev = torch.device("cuda:0")
    x, w = VARIANTS["rmsnorm"].make_inputs(4096, 4096, torch.bfloat16, dev, 0, cfg)
    counts = {}
    for impl in ("eager", "native"):
        fn = build("rmsnorm", impl, cfg)
        with torch.no_grad():
            b = breakdown(lambda fn=fn: fn(x, w), dev, p50_us=None)
        assert b["unit"] == "cuda kernels"
        counts[impl] = b["kernels_per_call"]
    assert counts["native"] == 1
    assert counts["eager"] >= 4


def test_nvml_energy_counter_measures_a_real_loop():
    from profilers.measure.instruments import energy
    from profilers.sensors.nvml import Nvml, gpu_for_torch_device

    nv = Nvml()
    if not nv.available:
        pytest.skip(f"NVML unavailable: {nv.reason}")
    gpu = gpu_for_torch_device(nv, 0)
    assert gpu is not None, "torch's cuda:0 must match an NVML device by UUID"
    meter = energy.choose_meter("cuda", gpu, None, None)
    assert meter.method == "nvml_energy_counter", meter.reason
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    r = energy.measure(
        lambda: torch.nn.functional.rms_norm(x, (8192,)),
        meter,
        tokens=8192,
        window_s=1.0,
        repeats=3,
        sync=torch.cuda.synchronize,
    )
    assert r.mj_per_call > 0 and 30 < r.mean_power_w < 1500
    assert r.spread_pct < 25


def test_events_time_the_sweep_devices_stream():
    """With two GPUs, cuda:1's point must take as long as cuda:0's (not ≈ 0: an idle stream elsewhere)."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"this machine has {torch.cuda.device_count()} GPU: cuda:1 vs cuda:0 needs two")
    p50 = {}
    for i in (0, 1):
        dev = torch.device(f"cuda:{i}")
        with torch.cuda.device(dev):
            x = torch.randn(16384, 4096, device=dev, dtype=torch.bfloat16)
            p50[i] = CudaEventTimer(10, 50, dev).measure(lambda x=x: torch.nn.functional.rms_norm(x, (4096,))).stats
    assert p50[1].p50_us == pytest.approx(p50[0].p50_us, rel=0.25)


def test_graph_timer_refuses_backward_and_times_forward():
    dev = torch.device("cuda:0")
    r = measure_one(Point("rmsnorm", "native", "bfloat16", 4096, 4096, "fwdbwd"), _ctx(CudaGraphTimer(5, 20, dev)))
    assert r.status == "skipped" and "forward only" in r.error
    ok = measure_one(Point("rmsnorm", "native", "bfloat16", 4096, 4096, "fwd"), _ctx(CudaGraphTimer(5, 20, dev)))
    assert ok.status in ("ok", "unstable") and ok.timing_method == "cuda_graph" and ok.cache_state == "cold"


def test_warm_is_faster_than_cold_when_the_working_set_fits_in_l2():
    dev = torch.device("cuda:0")
    x = torch.randn(2048, 4096, device=dev, dtype=torch.bfloat16)  # 16 MB in, 16 MB out: fits a 50 MB L2

    def fn():
        return torch.nn.functional.layer_norm(x, (4096,))

    cold = CudaEventTimer(10, 100, dev).measure(fn).stats.p50_us
    warm = CudaEventTimer(10, 100, dev, cache_state="warm").measure(fn).stats.p50_us
    graph = CudaGraphTimer(10, 100, dev, cache_state="warm").measure(fn).stats.p50_us
    print(f"16 MB LayerNorm: cold {cold:.1f} µs, warm events {warm:.1f} µs, warm graph {graph:.1f} µs")
    assert warm < cold
    assert warm == pytest.approx(graph, rel=0.25)  # launch-free, like a graph replay: not the CPU's launch rate


def test_launch_overhead_is_near_zero_for_long_kernels_and_graphs_and_large_for_small_eager_ops():
    from profilers.measure.instruments.kernels import breakdown

    dev = torch.device("cuda:0")
    big = torch.randn(32768, 8192, device=dev)  # fp32 LayerNorm: one kernel of about a millisecond
    one = breakdown(lambda: torch.nn.functional.layer_norm(big, (8192,)), dev)
    assert one["kernel_us_per_call"] > 500 and one["launch_overhead_pct"] < 10, one
    small = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16)

    def eager_rms():
        xf = small.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(small.dtype)

    many = breakdown(eager_rms, dev)
    assert many["kernels_per_call"] >= 4 and many["launch_overhead_pct"] > 25, many
    stream = torch.cuda.Stream(dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(stream):
        for _ in range(3):
            eager_rms()
    torch.cuda.current_stream(dev).wait_stream(stream)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        for _ in range(50):
            eager_rms()
    replay = breakdown(g.replay, dev)
    assert replay["launch_overhead_pct"] < many["launch_overhead_pct"] / 2, (replay, many)


def test_compile_workers_are_shut_down_before_timing():
    import time

    import psutil

    from profilers.measure.instruments import compile as compiling

    compiling.configure("cuda")
    r = measure_one(Point("rmsnorm", "compiled", "bfloat16", 4096, 4096, "fwd"), _ctx(CudaEventTimer(5, 20, "cuda:0")))
    assert r.status in ("ok", "unstable"), r.error
    compiling.quiesce()
    end = time.monotonic() + 10
    while True:
        children = [p for p in psutil.Process().children(recursive=True) if "python" in p.name().lower()]
        if not children or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert children == [], [p.cmdline()[:3] for p in children]


def test_compiled_point_passes_the_positive_compile_check_on_cuda():
    r = measure_one(
        Point("layernorm", "compiled", "bfloat16", 4096, 4096, "fwdbwd"), _ctx(CudaEventTimer(5, 20, "cuda:0"))
    )
    assert r.status in ("ok", "unstable"), r.error  # verify_compiled found the graph and no eager op


def test_energy_counter_agrees_with_integrated_instant_power():
    """Over one 2 s loop: NVML's energy counter against 10 ms samples of instant power, integrated."""
    import time

    from profilers.measure.instruments import energy
    from profilers.sensors.nvml import Nvml, gpu_for_torch_device
    from profilers.sensors.sampler import Sampler

    nv = Nvml()
    if not nv.available:
        pytest.skip(f"NVML unavailable: {nv.reason}")
    gpu = gpu_for_torch_device(nv, 0)
    x = torch.randn(32768, 8192, device="cuda", dtype=torch.bfloat16)
    fast = Sampler(gpu, None, period_s=0.01).start()
    time.sleep(0.1)
    torch.cuda.synchronize()
    t0, e0 = fast.now_s(), gpu.energy_mj().value
    end = time.perf_counter() + 2.0
    n = 0
    while time.perf_counter() < end:
        torch.nn.functional.rms_norm(x, (8192,))
        n += 1
        if n % 50 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    t1, e1 = fast.now_s(), gpu.energy_mj().value
    time.sleep(0.05)
    fast.stop()
    counter_j = (e1 - e0) / 1000
    integrated_j = energy.integrate_power(fast.columns["t_s"], fast.columns["gpu_power_instant_w"], t0, t1)
    assert integrated_j == pytest.approx(counter_j, rel=0.10)


def test_free_memory_counts_what_torch_holds_in_its_cache():
    from profilers.measure.instruments.memory import available_bytes

    dev = torch.device("cuda:0")
    x = torch.empty(2 << 30, dtype=torch.uint8, device=dev)  # 2 GiB, then freed into torch's cache
    del x
    free, what = available_bytes(dev)
    driver_free, _ = torch.cuda.mem_get_info(dev)
    assert free >= driver_free + (2 << 30) - (64 << 20) and "cache" in what
    torch.cuda.empty_cache()


def test_a_launch_bound_call_queued_behind_a_spin_is_timed_at_the_gpus_pace():
    """A compiled forward+backward at 8192×4096 bf16 took 721 µs as launched on an H200 host for 152 µs of
    kernels: queued, the cold p50 must come near the kernels' time; as launched it may not."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from _gpu import fwdbwd_call

    from profilers.measure.instruments.kernels import breakdown

    dev = torch.device("cuda:0")
    call, why = fwdbwd_call("layernorm", "compiled", 8192, 4096, dev)
    assert call is not None, why
    queued = CudaEventTimer(10, 100, dev).measure(call)
    direct = CudaEventTimer(10, 100, dev, launch="direct").measure(call)
    kernels = breakdown(call, dev)["kernel_us_per_call"]
    print(
        f"LN compiled fwdbwd 8192x4096: queued {queued.stats.p50_us:.0f} µs, direct {direct.stats.p50_us:.0f} µs, "
        f"kernels {kernels:.0f} µs, launch {queued.dispatch_us:.0f} µs"
    )
    assert queued.method == "cuda_event_flush_queued"
    assert queued.stats.p50_us <= direct.stats.p50_us * 1.05
    assert queued.stats.p50_us < 2 * kernels  # cold (flushed) vs warm kernels: near, not equal
