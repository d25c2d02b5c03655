"""CUDA paths, for real. Run on a GPU machine: `pytest -m gpu` (scripts/gpu_check.sh)."""

import pytest
import torch

from profilers.catalog import Config
from profilers.measure.point import Context, measure_point
from profilers.measure.timing import CudaEventTimer, CudaGraphTimer
from profilers.spec import Point, SweepSpec
from profilers.store import Store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _ctx(timer, **kw):
    spec = SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((8, 16),), device="cuda", **kw)
    return Context(spec, torch.device("cuda:0"), Config(), timer, copy_gbps=1000.0)


def test_cuda_sweep_end_to_end(tmp_path):
    from profilers.measure.runner import run_sweep

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
    assert run["machine"]["gpu"]["name"]
    for r in out.results:
        if r.status == "skipped":
            continue
        assert r.status == "ok", (r.variant, r.impl, r.mode, r.error)
        assert r.timing_method == "cuda_event_flush"
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

    dev = torch.device("cuda:0")
    graph = CudaGraphTimer(10, 50, dev).measure(fn).stats.p50_us
    events = CudaEventTimer(10, 50, dev).measure(fn).stats.p50_us
    assert graph < events


def test_oom_is_recorded_on_the_point_not_raised():
    free, _ = torch.cuda.mem_get_info()
    tokens = int(free // (4096 * 2) * 2)  # about twice the free memory in bf16
    r = measure_point(
        Point("rmsnorm", "native", "bfloat16", tokens, 4096, "fwd"), _ctx(CudaEventTimer(5, 10, torch.device("cuda:0")))
    )
    assert r.status == "failed" and "out of memory" in r.error
    ok = measure_point(
        Point("rmsnorm", "native", "bfloat16", 1024, 4096, "fwd"), _ctx(CudaEventTimer(5, 10, torch.device("cuda:0")))
    )
    assert ok.status == "ok"  # the next point still runs


def test_provenance_matches_nvml_by_uuid():
    from profilers.measure import provenance

    gpu = provenance.machine("cuda:0")["gpu"]
    assert gpu["name"]
    if "nvml_reason" not in gpu:
        assert gpu["uuid"] and gpu["power_limit_w"] > 0


def test_cuda_kernel_breakdown_counts_device_kernels():
    from profilers.measure.kernels import breakdown
    from profilers.measure.variants import VARIANTS, build

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
    from profilers.measure import energy
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
