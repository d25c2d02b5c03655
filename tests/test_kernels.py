import torch

from profilers.catalog import Config
from profilers.measure import compile as compiling
from profilers.measure.kernels import breakdown
from profilers.measure.variants import VARIANTS, build

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


def test_breakdown_times_and_overhead_share():
    b = _ops("rmsnorm", "eager")
    assert b["kernel_us_per_call"] > 0
    assert 0 <= b["launch_overhead_pct"] <= 100
    assert abs(sum(k["us_per_call"] for k in b["kernels"]) - b["kernel_us_per_call"]) < 1e-6


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
    assert failed.yaxis == "y2" and not fig.layout.yaxis2.visible
    assert "dx differs" in failed.text[0]
