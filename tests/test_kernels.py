import torch

from profilers.catalog import Config
from profilers.measure.instruments import compile as compiling
from profilers.measure.instruments.kernels import breakdown
from profilers.measure.subjects.variants import VARIANTS, build

CPU = torch.device("cpu")


def _ops(variant, impl, tokens=256, hidden=512):
    cfg = Config()
    ins = VARIANTS[variant].make_inputs(tokens, hidden, torch.float32, CPU, 0, cfg)
    fn = build(variant, impl, cfg, compiler=compiling.compile_fresh)
    return breakdown(lambda: fn(*ins), CPU, p50_us=1e6)


def test_native_layernorm_launches_fewer_ops_than_eager_rmsnorm():
    native = _ops("layernorm", "native")
    eager = _ops("rmsnorm", "eager")
    assert native["unit"] == "aten ops"
    assert native["kernels_per_call"] == 1.0
    assert [k["name"] for k in native["kernels"]] == ["aten::layer_norm"]
    assert eager["kernels_per_call"] >= 5
    names = {k["name"] for k in eager["kernels"]}
    assert {"aten::pow", "aten::mean", "aten::rsqrt", "aten::mul"} <= names


def test_breakdown_times_ops_and_says_why_cpu_has_no_launch_overhead():
    b = _ops("rmsnorm", "eager")
    assert b["kernel_us_per_call"] > 0
    assert b["launch_overhead_pct"] is None and "dispatch" in b["launch_overhead_note"]
    assert abs(sum(k["us_per_call"] for k in b["kernels"]) - b["kernel_us_per_call"]) < 1e-6


def test_launch_overhead_arithmetic_on_synthetic_traces():
    from profilers.measure.instruments.kernels import launch_overhead_pct, split_memops

    # one 1.2 ms fused kernel in a 1.21 ms loop: the GPU never waited
    assert launch_overhead_pct(1200.0, 1210.0) < 1.0
    # eight 3 µs kernels launched every 15 µs: the GPU idled 80% of the loop
    assert launch_overhead_pct(8 * 3.0, 8 * 15.0) == 80.0
    # profiler rounding can put kernel time a hair above the loop: never negative
    assert launch_overhead_pct(101.0, 100.0) == 0.0
    compute, memops = split_memops([("triton_red_fused", 5.0), ("Memset (Device)", 1.0), ("Memcpy DtoD", 2.0)])
    assert [n for n, _ in compute] == ["triton_red_fused"] and len(memops) == 2


def test_compiled_call_counts_as_one_graph_on_cpu():
    b = _ops("rmsnorm", "compiled")
    assert [k["name"] for k in b["kernels"]] == ["inductor compiled graph"]


def test_chrome_trace_is_saved(tmp_path):
    cfg = Config()
    x, w = VARIANTS["rmsnorm"].make_inputs(8, 64, torch.float32, CPU, 0, cfg)
    fn = build("rmsnorm", "native", cfg)
    path = tmp_path / "t.json"
    b = breakdown(lambda: fn(x, w), CPU, p50_us=100.0, trace_path=str(path))
    assert b["trace_path"] == str(path) and path.stat().st_size > 100
    assert '"traceEvents"' in path.read_text()[:2000]


def test_failed_points_carry_no_time_value_on_the_latency_axis():
    from profilers.report import plots

    rows = [
        {
            "run_id": 1,
            "variant": "rmsnorm",
            "impl": "native",
            "dtype": "float32",
            "mode": "fwd",
            "tokens": 8,
            "hidden": 64,
            "status": "ok",
            "p20_us": 9.0,
            "p50_us": 10.0,
            "p80_us": 11.0,
            "noisy": False,
            "n_samples": 5,
            "iqr_us": 1.0,
            "error": None,
        },
        {
            "run_id": 1,
            "variant": "rmsnorm",
            "impl": "eager",
            "dtype": "float32",
            "mode": "fwd",
            "tokens": 8,
            "hidden": 64,
            "status": "failed",
            "p20_us": None,
            "p50_us": None,
            "p80_us": None,
            "noisy": None,
            "n_samples": None,
            "iqr_us": None,
            "error": "correctness: dx differs",
        },
    ]
    fig = plots.latency(plots.points_frame(rows))
    failed = next(t for t in fig.data if t.name == "failed (not timed)")
    # drawn on its own "not timed" strip overlaying the facet, never at a latency value
    strip = fig.layout["yaxis" + failed.yaxis[1:]]
    assert failed.yaxis != "y" and list(strip.ticktext) == ["not timed"] and strip.overlaying == "y"
    assert all(y == 0.05 for y in failed.y) and tuple(strip.range) == (0, 1)
    assert "dx differs" in failed.text[0]
