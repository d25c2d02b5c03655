"""One point: inputs → correctness gate → timing → memory.

Correctness comes first: a point whose output (or gradients, when backward is
timed) is beyond its dtype's tolerance against a float64 reference of the same
formula is failed and never timed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import compile as compiling
from . import energy, kernels
from .memory import count_saved_bytes, peak_increment
from .records import PointResult
from .roofline import bytes_moved, gbps, roofline_pct
from .sensors.sampler import Sampler
from .spec import Point, SweepSpec
from .timing import Timer
from .variants import VARIANTS, Config, build, reference, unsupported_reason

# (max |out-ref| / max |ref|, ‖out-ref‖ / ‖ref‖) allowed per dtype
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),
    "bfloat16": (3e-2, 1.5e-2),
    "float16": (4e-3, 2e-3),
}

Tensors = Sequence[torch.Tensor]


@dataclass(frozen=True)
class Errors:
    max_abs: float
    max_rel: float
    rel_l2: float
    worst: str  # which tensor was worst


def compare(actual: Tensors, expected: Tensors, names: Sequence[str]) -> Errors:
    """Scale-aware errors of each tensor against its float64 reference: the maxima over tensors."""
    max_abs = max_rel = rel_l2 = 0.0
    worst = names[0] if names else ""
    for a, e, name in zip(actual, expected, names, strict=True):
        d = a.detach().double() - e.detach()
        t_abs = d.abs().max().item()
        if not math.isfinite(t_abs):
            return Errors(math.inf, math.inf, math.inf, name)
        t_rel = t_abs / max(e.abs().max().item(), 1e-30)
        rel_l2 = max(rel_l2, d.norm().item() / max(e.norm().item(), 1e-30))
        max_abs = max(max_abs, t_abs)
        if t_rel > max_rel:
            max_rel, worst = t_rel, name
    return Errors(max_abs, max_rel, rel_l2, worst)


def upstream_grads(outputs: Tensors, gen: torch.Generator, dtype: torch.dtype) -> list[torch.Tensor]:
    """dy = y + unit noise, the same for every implementation of a point.

    Used for scalar parameters only (DyT's α): with a purely random dy, a scalar
    gradient is a sum of random-sign terms that can cancel to near zero, making
    its relative error meaningless and the gate flaky. Correlated with the output,
    as a real loss gradient is, the sum does not cancel.
    """
    return [
        (o.detach().float() + torch.randn(o.shape, generator=gen, device=o.device, dtype=torch.float32)).to(dtype)
        for o in outputs
    ]


def gate(errors: Errors, dtype: str) -> str | None:
    """The reason a point fails correctness, or None."""
    max_rel_tol, l2_tol = TOLERANCES[dtype]
    if not math.isfinite(errors.max_abs):
        return f"{errors.worst} has NaN or Inf where the float64 reference is finite"
    if errors.max_rel > max_rel_tol or errors.rel_l2 > l2_tol:
        return (
            f"{errors.worst} differs from the float64 reference: max rel err {errors.max_rel:.2e} "
            f"(tolerance {max_rel_tol:.1e}), rel L2 err {errors.rel_l2:.2e} (tolerance {l2_tol:.1e}) for {dtype}"
        )
    return None


@dataclass
class Context:
    """What every point of one run shares."""

    spec: SweepSpec
    device: torch.device
    cfg: Config
    make_timer: Callable[[], Timer]
    copy_gbps: float | None
    threads: int | None
    meter: energy.Meter | None = None  # None: energy not requested
    idle_power_w: float | None = None
    sampler: Sampler | None = None
    trace_dir: Path | None = None  # where Chrome traces go when spec.save_traces


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def measure_point(p: Point, ctx: Context) -> PointResult:
    """Measure one point; expected failures become a failed result, never an exception."""
    device_str = str(ctx.device)
    reason = unsupported_reason(p.variant, p.impl, ctx.device.type, p.tokens, p.hidden, ctx.cfg, p.dtype, p.mode)
    if reason:
        return PointResult.for_point(p, device_str, "skipped", reason)
    try:
        return _measure(p, ctx)
    except compiling.CompileFallback as e:
        return PointResult.for_point(p, device_str, "failed", str(e))
    except torch.OutOfMemoryError as e:
        _release(ctx.device)
        return PointResult.for_point(p, device_str, "failed", f"out of memory: {_first_line(e)}")
    except (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError) as e:
        _release(ctx.device)
        return PointResult.for_point(p, device_str, "failed", _first_line(e))


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except RuntimeError:
            pass


def _measure(p: Point, ctx: Context) -> PointResult:
    v = VARIANTS[p.variant]
    dtype = getattr(torch, p.dtype)
    elem = torch.empty((), dtype=dtype).element_size()
    training = p.mode != "fwd"
    res = PointResult.for_point(p, str(ctx.device), "ok")

    inputs = v.make_inputs(p.tokens, p.hidden, dtype, ctx.device, ctx.spec.seed, ctx.cfg)
    dys: list[torch.Tensor] = []  # random upstream gradients: timed, and gate every gradient but scalars'
    dys_param: list[torch.Tensor] = []  # output-correlated ones: gate scalar parameter gradients (DyT's α)
    scalar = [t.numel() == 1 for t in inputs]
    params = [t for t, s in zip(inputs, scalar) if s]
    activations = [t for t, s in zip(inputs, scalar) if not s]
    if training:
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.spec.seed + 1)
        dys = [
            torch.randn(p.tokens, p.hidden, generator=gen, device=ctx.device, dtype=torch.float32).to(dtype)
            for _ in range(v.n_outputs)
        ]
        if params:  # only scalar parameters need the extra fp32 forward
            with torch.no_grad():
                y32 = reference(p.variant, ctx.cfg)(*[t.float() for t in inputs])
            dys_param = upstream_grads(y32, gen, dtype)
            del y32
        for t in inputs:
            t.requires_grad_(True)

    compiled: compiling.Compiled | None = None

    def compiler(f):
        nonlocal compiled
        compiled = compiling.compile_fresh(f)
        return compiled

    fn = build(p.variant, p.impl, ctx.cfg, compiler=compiler)

    # -- correctness gate (for compiled: these first calls also compile) ---------------
    def gate_calls() -> tuple[Tensors, Tensors, Tensors | None]:
        if not training:
            with torch.no_grad():
                outs = fn(*inputs)
            return outs, outs, None
        outs = fn(*inputs)
        d_act = torch.autograd.grad(outs, activations, dys, retain_graph=p.mode == "bwd")
        d_par = torch.autograd.grad(fn(*inputs), params, dys_param) if params else ()
        return outs, tuple(outs) + tuple(d_act) + tuple(d_par), outs

    if compiled is not None:
        with compiling.first_calls(retain_graph=p.mode == "bwd") as t:
            _, got, kept_outs = gate_calls()
            _sync(ctx.device)
        res.compile_s = t["compile_s"]
        res.extra["compile_cache_hits"] = int(t["cache_hits"])
    else:
        _, got, kept_outs = gate_calls()

    names = [f"output {i}" for i in range(v.n_outputs)]
    x64 = [t.detach().double().requires_grad_(training) for t in inputs]
    ref_outs = reference(p.variant, ctx.cfg)(*x64)
    expected: list[torch.Tensor] = list(ref_outs)
    if training:
        act64 = [t for t, s in zip(x64, scalar) if not s]
        par64 = [t for t, s in zip(x64, scalar) if s]
        expected += torch.autograd.grad(ref_outs, act64, [d.double() for d in dys], retain_graph=True)
        if par64:
            expected += torch.autograd.grad(ref_outs, par64, [d.double() for d in dys_param])
        names += [f"d{n}" for n, s in zip(v.inputs, scalar) if not s]
        names += [f"d{n}" for n, s in zip(v.inputs, scalar) if s]
    errs = compare(got, expected, names)
    del x64, ref_outs, expected, got
    res.max_abs_err, res.max_rel_err, res.rel_l2_err = errs.max_abs, errs.max_rel, errs.rel_l2
    why = gate(errs, p.dtype)
    if why:
        res.status, res.error = "failed", f"correctness: {why}"
        return res

    # -- the timed callable ------------------------------------------------------
    if p.mode == "fwd":

        def call():
            with torch.no_grad():
                return fn(*inputs)
    elif p.mode == "fwdbwd":

        def call():
            return torch.autograd.grad(fn(*inputs), inputs, dys)
    else:
        assert kept_outs is not None

        def call():
            return torch.autograd.grad(kept_outs, inputs, dys, retain_graph=True)

    timer = ctx.make_timer()
    with compiling.steady_state() if compiled is not None else contextlib.nullcontext():
        t_start = ctx.sampler.now_s() if ctx.sampler else None
        m = timer.measure(call)
        if ctx.sampler is not None and t_start is not None:
            res.extra["sensors"] = ctx.sampler.summary(t_start, ctx.sampler.now_s())
        peak = peak_increment(call, ctx.device)
        _energy(p, ctx, call, res)
        if ctx.spec.trace:
            _trace(p, ctx, call, m.stats.p50_us, res)
    s = m.stats
    res.timing_method, res.threads = m.method, m.threads
    res.n_samples, res.calls_per_sample = s.n, m.calls_per_sample
    res.p20_us, res.p50_us, res.p80_us, res.mean_us, res.iqr_us = s.p20_us, s.p50_us, s.p80_us, s.mean_us, s.iqr_us
    res.noisy = s.noisy
    res.bytes_moved = bytes_moved(p.variant, p.mode, p.tokens, p.hidden, elem)
    res.gbps = gbps(res.bytes_moved, s.p50_us)
    res.roofline_pct = roofline_pct(res.gbps, ctx.copy_gbps)
    if res.roofline_pct is not None and res.roofline_pct > 100:
        res.extra["roofline_note"] = "above the copy roofline: the working set fits in cache"
    res.peak_bytes, res.peak_note = peak.value, peak.reason

    if not training:
        res.saved_note = "inference forward: nothing is saved for backward"
    elif compiled is not None:
        res.saved_note = "not measured for compiled code: saved-tensor hooks would change what is compiled"
    else:
        with count_saved_bytes() as saved:
            outs = fn(*inputs)
        res.saved_bytes = saved["bytes"]
        del outs
    return res


def _energy(p: Point, ctx: Context, call: Callable[[], object], res: PointResult) -> None:
    if ctx.meter is None:
        res.energy_note = "not measured: run with --energy"
        return
    if ctx.meter.reason:
        res.energy_note = ctx.meter.reason
        return
    try:
        e = energy.measure(
            call,
            ctx.meter,
            tokens=p.tokens,
            window_s=ctx.spec.energy_window_s,
            repeats=ctx.spec.energy_repeats,
            idle_power_w=ctx.idle_power_w,
            sync=lambda: _sync(ctx.device),
        )
    except RuntimeError as exc:
        res.energy_note = f"energy not measured: {_first_line(exc)}"
        return
    for k, v in e.to_fields().items():
        setattr(res, k, v)
    if e.dynamic_mj_per_call is None:
        res.energy_note = "dynamic energy N/A: idle power was not measured"


def _trace(p: Point, ctx: Context, call: Callable[[], object], p50_us: float, res: PointResult) -> None:
    path = None
    if ctx.spec.save_traces and ctx.trace_dir is not None:
        ctx.trace_dir.mkdir(parents=True, exist_ok=True)
        path = str(ctx.trace_dir / f"{p.variant}_{p.impl}_{p.dtype}_{p.shape}_{p.mode}.json")
    k = kernels.breakdown(call, ctx.device, p50_us, trace_path=path)
    res.kernels_per_call = k["kernels_per_call"]
    res.kernel_us_per_call = k["kernel_us_per_call"]
    res.launch_overhead_pct = k["launch_overhead_pct"]
    res.trace_path = k.get("trace_path")
    res.extra["kernels"] = {key: v for key, v in k.items() if key != "trace_path"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
