"""One point: inputs → correctness gate → timing → memory → [energy] → [kernels].

Correctness comes first: a point whose output (or gradients, when backward is
timed) is beyond its dtype's tolerance against a float64 reference of the same
formula is failed and never timed.

A point is measured in three steps so that several can be timed together:
``prepare`` (inputs, upstream gradients, gate, the timed callable), then the
timer, then ``finish`` (statistics, roofline, memory, energy, kernels).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...analysis.roofline import Ladder, bytes_moved, cache_level, gbps, roofline_pct
from ...catalog import DTYPES, Config, reduced_elements, unsupported_reason
from ...runs import first_line
from ...sensors.sampler import Sampler
from ...spec import Point, SweepSpec
from ...store.records import PointResult
from ..instruments import compile as compiling
from ..instruments import energy, kernels
from ..instruments.memory import count_saved_bytes, peak_increment
from ..instruments.timing import Measurement, Timer
from ..subjects.gate import Errors, Tensors, Verdict, classify, errors_vs_reference, upstream_grads
from ..subjects.variants import VARIANTS, build, reference

ERRORS = (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError)


@dataclass
class Context:
    """What every point of one run shares."""

    spec: SweepSpec
    device: torch.device
    cfg: Config
    timer: Timer
    copy_gbps: float | None
    meter: energy.Meter | None = None  # None: energy not requested
    idle_power_w: float | None = None
    sampler: Sampler | None = None
    trace_dir: Path | None = None  # where Chrome traces go when spec.save_traces
    ladder: Ladder | None = None  # the copy ladder: each point's ceiling at its working set
    inputs_cache: dict[tuple, Any] = field(default_factory=dict)  # one input set per variant within a group
    # what judges a timed group's results together before they are stored (the runner's rerun intervals)
    judge_group: Callable[[list[PointResult]], None] | None = None
    # the copy bandwidth now (GB/s), taken before and after each group: the memory state it was timed in
    memory_state: Callable[[], float] | None = None


@dataclass
class Prepared:
    """A point that passed its gate: the callable to time, and what ``finish`` needs."""

    point: Point
    result: PointResult
    call: Callable[[], Any]
    fn: Callable[..., Any]
    inputs: list[torch.Tensor]
    compiled: bool
    verdict: Verdict | None = None
    movable: list[list[torch.Tensor]] = field(default_factory=list)  # lists a new placement re-fills

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        """Timed calls of a compiled point must not recompile; if one does, it fails the point."""
        with compiling.steady_state() if self.compiled else contextlib.nullcontext():
            yield


def failure(p: Point, ctx: Context, exc: BaseException) -> PointResult:
    """An expected failure as a failed result; frees cached device memory after an error."""
    device = str(ctx.device)
    if isinstance(exc, compiling.CompileFallback):
        return PointResult.for_point(p, device, "failed", str(exc))
    release(ctx.device)
    if isinstance(exc, torch.OutOfMemoryError):
        return PointResult.for_point(p, device, "failed", f"out of memory: {first_line(exc)}")
    return PointResult.for_point(p, device, "failed", first_line(exc))


def release(device: torch.device) -> None:
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except RuntimeError:
            pass


# -- prepare: inputs → gate → timed callable ----------------------------------------------
@dataclass
class _Inputs:
    tensors: list[torch.Tensor]  # the one list holding the inputs: a new placement replaces its entries
    scalar: list[bool]
    dys: list[torch.Tensor]  # random upstream gradients: timed, and gate every gradient but scalars'
    dys_param: list[torch.Tensor]
    # CPU: the float64 reference of these inputs, gated against by every implementation of the variant; freed
    # once the group is prepared (``forget_references``)
    expected: tuple[list[torch.Tensor], list[str]] | None = None

    @property
    def activations(self) -> list[torch.Tensor]:
        return [t for t, s in zip(self.tensors, self.scalar) if not s]

    @property
    def params(self) -> list[torch.Tensor]:
        """Scalar parameters (DyT's α): gated with output-correlated dy."""
        return [t for t, s in zip(self.tensors, self.scalar) if s]


REFERENCE_KEEP_BYTES = 1 << 30  # a larger CPU reference is computed again for each implementation


def _inputs(p: Point, ctx: Context, dtype: torch.dtype, training: bool) -> _Inputs:
    """The point's inputs; shared by every implementation of its variant within a group (same seed, same
    tensors), so a group holds one input set per variant, not one per candidate."""
    key = (p.variant, p.tokens, p.hidden, p.dtype, p.mode, str(dtype))
    cached = ctx.inputs_cache.get(key)
    if cached is None:
        cached = ctx.inputs_cache[key] = _make_inputs(p, ctx, dtype, training)
    return cached


def _make_inputs(p: Point, ctx: Context, dtype: torch.dtype, training: bool) -> _Inputs:
    v = VARIANTS[p.variant]
    tensors = v.make_inputs(p.tokens, p.hidden, dtype, ctx.device, ctx.spec.seed, ctx.cfg)
    scalar = [t.numel() == 1 for t in tensors]
    params = [t for t, s in zip(tensors, scalar) if s]
    dys: list[torch.Tensor] = []
    dys_param: list[torch.Tensor] = []
    if training:
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.spec.seed + 1)
        dys = [
            torch.randn(p.tokens, p.hidden, generator=gen, device=ctx.device, dtype=torch.float32).to(dtype)
            for _ in range(v.n_outputs)
        ]
        if params:  # only scalar parameters need the extra fp32 forward
            with torch.no_grad():
                y32 = reference(p.variant, ctx.cfg)(*[t.float() for t in tensors])
            dys_param = upstream_grads(y32, gen, dtype)
            del y32
        for t in tensors:
            t.requires_grad_(True)
    return _Inputs(tensors, scalar, dys, dys_param)


def _expected(p: Point, ctx: Context, ins: _Inputs, training: bool) -> tuple[list[torch.Tensor], list[str]]:
    """The float64 reference's outputs (and gradients) with the names the gate reports; on CPUs computed once
    per input set (up to ``REFERENCE_KEEP_BYTES``), the same for every implementation."""
    if ins.expected is not None:
        return ins.expected
    v = VARIANTS[p.variant]
    names = [f"output {i}" for i in range(v.n_outputs)]
    x64 = [t.detach().double().requires_grad_(training) for t in ins.tensors]
    ref_outs = reference(p.variant, ctx.cfg)(*x64)
    expected: list[torch.Tensor] = list(ref_outs)
    if training:
        act64 = [t for t, s in zip(x64, ins.scalar) if not s]
        par64 = [t for t, s in zip(x64, ins.scalar) if s]
        expected += torch.autograd.grad(ref_outs, act64, [d.double() for d in ins.dys], retain_graph=True)
        if par64:
            expected += torch.autograd.grad(ref_outs, par64, [d.double() for d in ins.dys_param])
        names += [f"d{n}" for n, s in zip(v.inputs, ins.scalar) if not s]
        names += [f"d{n}" for n, s in zip(v.inputs, ins.scalar) if s]
    out = [t.detach() for t in expected], names
    if ctx.device.type == "cpu" and sum(t.numel() * t.element_size() for t in out[0]) <= REFERENCE_KEEP_BYTES:
        forget_references(ctx)  # points come variant by variant: one reference kept at a time
        ins.expected = out
    return out


def forget_references(ctx: Context) -> None:
    """Free the kept float64 references of a group's inputs: the gate is done, the timing starts."""
    for ins in ctx.inputs_cache.values():
        if isinstance(ins, _Inputs):
            ins.expected = None


def _timed_callable(mode: str, fn: Callable[..., Any], ins: _Inputs, kept: Tensors | None) -> Callable[[], Any]:
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return fn(*ins.tensors)

    elif mode == "fwdbwd":

        def call():
            return torch.autograd.grad(fn(*ins.tensors), ins.tensors, ins.dys)

    else:
        assert kept is not None

        def call():
            return torch.autograd.grad(kept, ins.tensors, ins.dys, retain_graph=True)

    return call


def prepare(p: Point, ctx: Context) -> Prepared | PointResult:
    """Inputs, the correctness gate, and the timed callable; a skipped or failed result when it cannot be timed.

    Expected errors propagate: callers turn them into a failed result with ``failure``.
    """
    reason = unsupported_reason(p.variant, p.impl, ctx.device.type, p.tokens, p.hidden, ctx.cfg, p.dtype, p.mode)
    if not reason and ctx.timer.method == "cuda_graph" and p.mode != "fwd":
        reason = (
            "CUDA-graph timing covers forward only: autograd cannot capture a backward whose forward ran outside "
            "the capture; time training modes with the event timer (drop --cuda-graph)"
        )
    if reason:
        return PointResult.for_point(p, str(ctx.device), "skipped", reason)
    training = p.mode != "fwd"
    res = PointResult.for_point(p, str(ctx.device), "ok")
    ins = _inputs(p, ctx, getattr(torch, p.dtype), training)

    compiled: compiling.Compiled | None = None

    def compiler(f):
        nonlocal compiled
        compiled = compiling.compile_fresh(f)
        return compiled

    fn = build(p.variant, p.impl, ctx.cfg, compiler=compiler)

    def gate_calls() -> tuple[Tensors, Tensors | None]:
        """What the gate compares; for compiled code these first calls also compile."""
        if not training:
            with torch.no_grad():
                outs = fn(*ins.tensors)
            return outs, None
        outs = fn(*ins.tensors)
        d_act = torch.autograd.grad(outs, ins.activations, ins.dys, retain_graph=p.mode == "bwd")
        d_par = torch.autograd.grad(fn(*ins.tensors), ins.params, ins.dys_param) if ins.params else ()
        return tuple(outs) + tuple(d_act) + tuple(d_par), outs

    if compiled is not None:
        with compiling.first_calls(retain_graph=p.mode == "bwd") as t:
            got, kept = gate_calls()
            sync(ctx.device)
        res.compile_s = t["compile_s"]
        res.extra["compile_cache_hits"] = int(t["cache_hits"])
    else:
        got, kept = gate_calls()

    expected, names = _expected(p, ctx, ins, training)
    errs = errors_vs_reference(got, expected, names)
    del got
    res.max_abs_err, res.max_rel_err, res.rel_l2_err = errs.max_abs, errs.max_rel, errs.rel_l2
    n_reduced = reduced_elements(p.variant, p.mode, p.tokens, p.hidden, ctx.cfg)
    verdict = classify(errs, p.dtype, n_reduced, lambda e=expected: _fp32_errors(p, ctx, e, names))
    del expected
    res.gate, res.gate_note, res.error_multiple = verdict.level, verdict.note, verdict.multiple
    if not verdict.timed:
        res.status, res.error = "failed", f"correctness: {verdict.note}"
        return res
    call = _timed_callable(p.mode, fn, ins, kept)
    if compiled is not None:
        with compiling.steady_state():
            compiling.verify_compiled(call, sync=lambda: sync(ctx.device))
    # what a new memory placement may move: not a bwd point's inputs, which its saved graph holds
    movable = [] if p.mode == "bwd" else [ins.tensors, ins.dys]
    return Prepared(p, res, call, fn, ins.tensors, compiled is not None, verdict, movable)


def _fp32_errors(p: Point, ctx: Context, expected: list[torch.Tensor], names: list[str]) -> Errors:
    """The same implementation on the point's inputs in float32: right there means the half-precision error
    is rounding; wrong there too means a logic error."""
    training = p.mode != "fwd"
    src = _inputs(p, ctx, getattr(torch, p.dtype), training)
    ins = [t.detach().float().requires_grad_(training) for t in src.tensors]
    fn = build(p.variant, p.impl, ctx.cfg, compiler=compiling.compile_fresh)
    if not training:
        with torch.no_grad():
            got = list(fn(*ins))
    else:
        scalar = src.scalar
        outs = fn(*ins)
        acts = [t for t, s in zip(ins, scalar) if not s]
        pars = [t for t, s in zip(ins, scalar) if s]
        got = [*outs, *torch.autograd.grad(outs, acts, [d.float() for d in src.dys])]
        if pars:
            got += torch.autograd.grad(fn(*ins), pars, [d.float() for d in src.dys_param])
    return errors_vs_reference(got, expected, names)


# -- finish: statistics → roofline → memory → [energy] → [kernels] → saved bytes ------------
def finish(
    prep: Prepared,
    m: Measurement,
    ctx: Context,
    sensors: dict[str, Any] | None = None,
    unstable: str | None = None,
) -> PointResult:
    """Fill the prepared point's result from its timing and the passes that follow it.

    Status: ``unstable`` (its interval stayed wider than the target: the reason given), else ``imprecise``
    when the gate said so, else ``ok``.
    """
    p, res = prep.point, prep.result
    if sensors is not None:
        res.extra["sensors"] = sensors
    _stats(res, p, m, ctx)
    if unstable:
        res.status, res.error = "unstable", unstable
    elif res.gate == "imprecise":
        res.status = "imprecise"
    peak = peak_increment(prep.call, ctx.device)
    res.peak_bytes, res.peak_note = peak.value, peak.reason
    measure_energy(p.tokens, ctx, prep.call, res)
    if ctx.spec.trace:
        _trace(p, ctx, prep.call, m.stats.p50_us, res)
    _saved(prep, res)
    return res


def _stats(res: PointResult, p: Point, m: Measurement, ctx: Context) -> None:
    s = m.stats
    res.timing_method, res.threads = m.method, m.threads
    res.n_samples, res.calls_per_sample = s.n, m.calls_per_sample
    res.p20_us, res.p50_us, res.p80_us, res.mean_us, res.iqr_us = s.p20_us, s.p50_us, s.p80_us, s.mean_us, s.iqr_us
    res.noisy = s.noisy
    res.cache_state = getattr(ctx.timer, "cache_state", None)
    res.bytes_moved = bytes_moved(p.variant, p.mode, p.tokens, p.hidden, DTYPES[p.dtype])
    res.working_set_bytes = res.bytes_moved
    res.gbps = gbps(res.bytes_moved, s.p50_us)
    if ctx.ladder is not None:
        res.ceiling_gbps = ctx.ladder.ceiling_gbps(res.working_set_bytes)
        res.roofline_level = cache_level(
            res.working_set_bytes, ctx.ladder.caches, ctx.ladder.device_type, ctx.ladder.cache_state
        )
    else:
        res.ceiling_gbps = ctx.copy_gbps
    res.roofline_pct = roofline_pct(res.gbps, res.ceiling_gbps)
    if res.roofline_pct is not None and res.roofline_pct > 105:
        res.extra["roofline_note"] = "above the copy ladder at this working set"
    if m.dispatch_us is not None:
        res.extra["dispatch_us"] = m.dispatch_us
        note = launch_bound_note(m.dispatch_us, s.p50_us, m.method)
        if note:
            res.extra["launch_bound"] = note


def launch_bound_note(dispatch_us: float, p50_us: float, method: str) -> str | None:
    """A sentence when launching one call takes the host longer than the GPU takes to run it, else None.
    Only a queued timer separates the two: a call timed as launched already holds part of its launch."""
    if method not in ("cuda_event_flush_queued", "cuda_event_queued") or not p50_us or dispatch_us <= p50_us:
        return None
    return (
        f"launch-bound on this host: launching one call takes the CPU {dispatch_us:,.0f} µs, "
        f"{dispatch_us / p50_us:.1f}× its GPU time ({p50_us:,.0f} µs); inside a model step whose GPU work runs "
        "ahead of the host it costs the GPU time, a call alone costs the launch"
    )


def _saved(prep: Prepared, res: PointResult) -> None:
    if prep.point.mode == "fwd":
        res.saved_note = "inference forward: nothing is saved for backward"
    elif prep.compiled:
        res.saved_note = "not measured for compiled code: saved-tensor hooks would change what is compiled"
    else:
        with count_saved_bytes() as saved:
            outs = prep.fn(*prep.inputs)
        res.saved_bytes = saved["bytes"]
        del outs


def measure_energy(tokens: int, ctx: Context, call: Callable[[], object], res: PointResult) -> None:
    """Energy per call of ``call`` into ``res`` (a kernel or a block point), or the reason it is N/A."""
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
            tokens=tokens,
            window_s=ctx.spec.energy_window_s,
            repeats=ctx.spec.energy_repeats,
            idle_power_w=ctx.idle_power_w,
            sync=lambda: sync(ctx.device),
        )
    except (RuntimeError, ArithmeticError, TypeError, ValueError) as exc:  # a sensor failing mid-window
        res.energy_note = f"energy not measured: {first_line(exc)}"
        return
    for k, v in e.to_fields().items():
        setattr(res, k, v)
    res.energy_loop_us = e.loop_us_per_call
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
    res.memops_per_call = k.get("memops_per_call")
    res.launch_overhead_pct = k["launch_overhead_pct"]
    res.trace_path = k.get("trace_path")
    res.extra["kernels"] = {key: v for key, v in k.items() if key != "trace_path"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
