import dataclasses

import pytest
import torch
from conftest import measure_one

from profilers.catalog import Config
from profilers.measure.instruments import compile as compiling
from profilers.measure.instruments.timing import CpuTimer
from profilers.measure.subjects import variants
from profilers.measure.sweep.point import Context
from profilers.spec import Point, SweepSpec


def _ctx(**spec_kw) -> Context:
    """These tests read a point's record: the widest interval target keeps a busy machine's noise (a point
    then stored unstable) out of them; the rounds' rules have tests of their own (test_rounds.py)."""
    spec_kw = {"ci_target_pct": 50.0, **spec_kw}
    spec = SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((32, 64),), **spec_kw)
    timer = CpuTimer(warmup_ms=1, budget_ms=5, threads=1)
    return Context(spec, torch.device("cpu"), Config(), timer, copy_gbps=10.0)


def test_ok_point_has_stats_bytes_and_roofline():
    r = measure_one(Point("rmsnorm", "native", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "ok", r.error
    assert r.p20_us <= r.p50_us <= r.p80_us
    assert r.bytes_moved == 2 * 32 * 64 * 4 + 64 * 4
    assert r.gbps == pytest.approx(r.bytes_moved / r.p50_us / 1e3)
    assert r.roofline_pct == pytest.approx(r.gbps / 10.0 * 100)
    assert r.max_abs_err is not None and r.max_abs_err < 1e-5
    assert r.timing_method == "cpu_blocks"
    assert r.peak_bytes is not None and r.peak_bytes >= 32 * 64 * 4
    assert r.saved_bytes is None and "inference" in r.saved_note


def test_training_modes_record_saved_bytes():
    r = measure_one(Point("layernorm", "eager", "float32", 32, 64, "fwdbwd"), _ctx())
    assert r.status == "ok", r.error
    assert r.saved_bytes and r.saved_bytes >= 32 * 64 * 4
    b = measure_one(Point("layernorm", "native", "float32", 32, 64, "bwd"), _ctx())
    assert b.status == "ok", b.error
    assert b.bytes_moved == 3 * 32 * 64 * 4 + 2 * 2 * 64 * 4


def test_unsupported_point_is_skipped_with_reason():
    r = measure_one(Point("dyt", "native", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "skipped" and "DyT" in r.error
    assert r.p50_us is None


def _plant(monkeypatch, variant: str, **fields):
    planted = dataclasses.replace(variants.VARIANTS[variant], **fields)
    monkeypatch.setitem(variants.VARIANTS, variant, planted)


def test_gate_catches_a_planted_wrong_implementation(monkeypatch):
    def wrong_native(x, w, *, cfg):  # forgets eps and adds a bias nobody asked for
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w + 0.01,)

    _plant(monkeypatch, "rmsnorm", native=wrong_native)
    r = measure_one(Point("rmsnorm", "native", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "failed"
    assert r.error.startswith("correctness:") and "float64 reference" in r.error
    assert r.p50_us is None  # never timed


def test_gate_checks_gradients_too(monkeypatch):
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    def wrong(x, w, *, cfg):
        return variants._rms_native(WrongGrad.apply(x), w, cfg=cfg)

    _plant(monkeypatch, "rmsnorm", native=wrong)
    ok_fwd = measure_one(Point("rmsnorm", "native", "float32", 32, 64, "fwd"), _ctx())
    assert ok_fwd.status == "ok"
    bad = measure_one(Point("rmsnorm", "native", "float32", 32, 64, "fwdbwd"), _ctx())
    assert bad.status == "failed" and "dx" in bad.error


def test_compiled_point_records_compile_time_apart():
    r = measure_one(Point("rmsnorm", "compiled", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "ok", r.error
    assert r.compile_s is not None and r.compile_s > 0
    assert r.p50_us * 1e-6 < r.compile_s  # compile time is not in the run time


def test_compiled_backward_only_mode_works():
    r = measure_one(Point("rmsnorm", "compiled", "float32", 32, 64, "bwd"), _ctx())
    assert r.status == "ok", r.error


def test_graph_break_is_reported_as_fallback_not_as_compiled(monkeypatch):
    def breaking(x, w, *, cfg):
        torch._dynamo.graph_break()
        return variants._rms_eager(x, w, cfg=cfg)

    _plant(monkeypatch, "rmsnorm", eager=breaking)
    r = measure_one(Point("rmsnorm", "compiled", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "failed"
    assert r.error.startswith(compiling.FALLBACK)


def test_silent_fallback_is_detected(monkeypatch):
    """With suppress_errors dynamo swallows the graph break and runs eager quietly."""

    def breaking(x, w, *, cfg):
        torch._dynamo.graph_break()
        return variants._rms_eager(x, w, cfg=cfg)

    _plant(monkeypatch, "rmsnorm", eager=breaking)
    with torch._dynamo.config.patch(suppress_errors=True):
        r = measure_one(Point("rmsnorm", "compiled", "float32", 32, 64, "fwd"), _ctx())
    assert r.status == "failed"
    assert compiling.FALLBACK in r.error


def test_recompile_limit_reuse_is_caught():
    """The H100 pitfall: one compiled function reused across shapes runs eager after the limit."""
    torch._dynamo.reset()
    f = torch.compile(lambda x: x * 2 + 1, dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=1):
        f(torch.randn(3))
        with pytest.raises(compiling.CompileFallback, match="compile fell back to eager"), compiling.steady_state():
            f(torch.randn(4))
            f(torch.randn(5))


def test_watch_accepts_a_clean_compile():
    watch = compiling.CompileWatch()
    compiled = compiling.compile_fresh(lambda x: x.sin() + 1)
    compiled(torch.randn(8))
    assert watch.problem(expect_new_graph=True) is None


def test_watch_sees_recompile_limit_hits_from_counters_alone():
    torch._dynamo.reset()
    f = torch.compile(lambda x: x * 3 - 1, dynamic=False)
    with torch._dynamo.config.patch(recompile_limit=1):
        f(torch.randn(3))
        watch = compiling.CompileWatch()
        f(torch.randn(4))
        f(torch.randn(5))
    assert "recompile limit" in watch.problem(expect_new_graph=False)


def test_bf16_cpu_layernorm_backward_is_imprecise_timed_and_says_how_far():
    """torch's CPU bf16 LayerNorm backward sums dbias/dweight in bf16: past the tolerance, right in fp32."""
    r = measure_one(Point("layernorm", "native", "bfloat16", 4096, 256, "fwdbwd"), _ctx())
    assert r.gate == "imprecise" and r.status == "imprecise", (r.gate, r.gate_note, r.error)
    assert r.p50_us and r.p50_us > 0  # timed and shown
    assert (
        r.error_multiple > 1 and "× past the bfloat16 tolerance" in r.gate_note and "correct in float32" in r.gate_note
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_a_planted_missing_bias_is_wrong_in_every_dtype(monkeypatch, dtype):
    def no_bias(x, w, b, *, cfg):  # forgets the bias: a logic error, whatever the precision
        return (torch.nn.functional.layer_norm(x, (x.shape[-1],), w, None, cfg.eps),)

    _plant(monkeypatch, "layernorm", native=no_bias)
    r = measure_one(Point("layernorm", "native", dtype, 64, 256, "fwd"), _ctx())
    assert r.gate == "wrong" and r.status == "failed" and r.p50_us is None, (r.gate, r.gate_note)
    assert r.error.startswith("correctness:")


def test_positive_compile_check_sees_eager_ops_outside_the_graph():
    from profilers.measure.instruments.kernels import quiet_profile

    fn = compiling.compile_fresh(lambda x: (x * 2,))
    x = torch.randn(8, 8)
    with compiling.first_calls():
        fn(x)
    with quiet_profile() as prof:
        fn(x)
    assert compiling.eager_ops_outside_graph(list(prof.events())) == (True, [])
    with quiet_profile() as prof:
        fn(x)
        torch.add(x, 1)  # an eager op beside the compiled graph
    ran, eager = compiling.eager_ops_outside_graph(list(prof.events()))
    assert ran and eager == ["aten::add"]
    with pytest.raises(compiling.CompileFallback, match="ran no compiled graph"):
        compiling.verify_compiled(lambda: torch.add(x, 1))


def test_dyt_fp16_backward_at_bert_scale_is_timed_with_its_overflow_named():
    """DyT's α gradient sums all 4096×768 elements: past fp16's range with an output-correlated loss gradient."""
    r = measure_one(Point("dyt", "eager", "float16", 4096, 768, "fwdbwd"), _ctx())
    assert r.status == "imprecise" and r.gate == "imprecise" and r.p50_us and r.p50_us > 0, (r.gate_note, r.error)
    assert "dalpha overflows float16" in r.gate_note
