"""Block points: the norm choice timed inside a real transformer block, and inside a training step.

A block point builds one block (``measure/models/blocks.py``) at the preset's shape, checks its
output and gradients against the same block in float64 with the same weights
(the two-level gate of ``gate.py``: a block rounds its activations at about
``catalog.BLOCK_ROUNDINGS`` ops in a row, so its half-precision tolerance is
that many times a single norm's), then is timed with the kernel points' timers
in interleaved rounds (``group.py``; baseline: Pre-LN LayerNorm native). After
timing, one profiled call breaks the block's time down by component (the
``record_function`` ranges: attention, MLP, norm, residual, and what is left:
other), so the norm's share of the block is measured, not assumed.

A step point times one AdamW step of a small stack of such blocks (embedding,
``step_depth`` blocks, LM head): the number a "share of training compute"
claim is about.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ...catalog import BLOCK_COMPONENTS, BLOCK_ROUNDINGS, DTYPES, block_unsupported
from ...catalog import Config as NormConfig
from ...measure.instruments import compile as compiling
from ...measure.instruments.kernels import quiet_profile
from ...measure.instruments.memory import peak_increment
from ...measure.instruments.timing import Measurement
from ...measure.models.blocks import (
    BlockConfig,
    block_config_from_preset,
    block_input,
    build_block,
    float64_copy,
    grad_errors,
)
from ...measure.models.stack import StackConfig, build_stack, make_optimizer, train_step
from ...measure.subjects.gate import Errors, Verdict, classify, errors_vs_reference
from ...measure.sweep.group import VISIT_SAMPLES
from ...measure.sweep.point import Context, measure_energy, release, sync
from ...runs import first_line
from ...store.records import PointResult
from .spec import STEP_MODE, BlockPoint, BlockSweepSpec

VOCAB = 256  # byte-level tokens for the training step


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


@dataclass
class BlockPrepared:
    point: BlockPoint
    result: PointResult
    call: Callable[[], Any]
    compiled: bool
    module: torch.nn.Module
    verdict: Verdict

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        with compiling.steady_state() if self.compiled else contextlib.nullcontext():
            yield


def _config(spec: BlockSweepSpec, bp: BlockPoint) -> BlockConfig:
    impl = "eager" if bp.impl == "compiled" else bp.impl  # a compiled block: torch.compile of the eager block
    return block_config_from_preset(spec.preset, norm=bp.norm, placement=bp.placement, impl=impl, ranges=True)


def worst_errors(a: Errors, b: Errors | None) -> Errors:
    if b is None:
        return a
    worst = a.worst if a.max_rel >= b.max_rel else b.worst
    return Errors(
        max(a.max_abs, b.max_abs), max(a.max_rel, b.max_rel), max(a.rel_l2, b.rel_l2), worst, a.overflow + b.overflow
    )


def _errors(fn: Callable[..., Any], module: torch.nn.Module, x: torch.Tensor, backward: bool, seed: int) -> Errors:
    """``fn`` (the block, or its compiled form) against the float64 copy: output and, with backward, the
    gradients of the input and of every parameter, under one seeded upstream gradient."""
    ref = float64_copy(module)
    floating = x.is_floating_point()
    xa = x.detach().clone().requires_grad_(backward and floating)
    xr = (x.detach().double() if floating else x.detach().clone()).requires_grad_(backward and floating)
    if not backward:  # as the timed forward runs: without autograd (a compiled block is guarded on it)
        with torch.no_grad():
            return errors_vs_reference([fn(xa)], [ref(xr)], ["output"])
    y, y_ref = fn(xa), ref(xr)
    out = errors_vs_reference([y], [y_ref], ["output"])
    gen = torch.Generator(device=y.device).manual_seed(seed)
    dy = torch.randn(y.shape, generator=gen, device=y.device, dtype=torch.float32)
    params = [p for p in module.parameters() if p.requires_grad]
    params_ref = [p for p in ref.parameters() if p.requires_grad]
    names = [f"d{n}" for n, p in module.named_parameters() if p.requires_grad]
    inputs, inputs_ref = ([xa], [xr]) if floating else ([], [])
    grads = torch.autograd.grad(y, [*inputs, *params], dy.to(y.dtype), allow_unused=True)
    grads_ref = torch.autograd.grad(y_ref, [*inputs_ref, *params_ref], dy.double(), allow_unused=True)
    names = (["dx"] if floating else []) + names
    keep = [i for i, (g, r) in enumerate(zip(grads, grads_ref)) if g is not None and r is not None]
    g_err = grad_errors([grads[i] for i in keep], [grads_ref[i] for i in keep], [names[i] for i in keep])
    return worst_errors(out, g_err)


class BlockKind:
    """Block and step points for ``group.measure_group``."""

    default_baseline = "pre_ln layernorm native"
    run_kind = "blocks"
    visit_samples = VISIT_SAMPLES
    points_own_memory = True  # each candidate builds its own block

    def check(self, spec: BlockSweepSpec) -> None:
        """A block sweep's spec checks itself."""

    def begin_group(self, points: Any, ctx: Context) -> str | None:
        """Each point is checked against the memory left as the ones before it allocate."""
        return None

    def close(self) -> None:
        """Nothing is kept across groups."""

    def key(self, p: BlockPoint) -> str:
        return p.key

    def need_bytes(self, p: BlockPoint, spec: BlockSweepSpec) -> int:
        """An upper estimate: weights and activations in the dtype and in float64 (the reference copy),
        twice over in training, and the attention scores a math-path SDPA materializes in float64."""
        cfg = _config(spec, p)
        h, f, e = cfg.hidden, cfg.ffn_size, DTYPES[p.dtype]
        weights = 4 * h * h + 3 * h * f
        acts = p.tokens * (12 * h + 4 * f)
        batch = p.tokens // spec.seq_len
        scores = batch * cfg.heads * spec.seq_len * spec.seq_len
        per = (weights + acts) * (e + 8) + scores * 8
        if p.mode != "fwd":
            per *= 2
        if p.mode == STEP_MODE:
            per = per * max(1, spec.step_depth or 1) + weights * 16 * (spec.step_depth or 1)  # AdamW state
        return int(per * 1.5) + (256 << 20)

    def result(self, p: BlockPoint, ctx: Context, status: str, error: str | None) -> PointResult:
        spec: BlockSweepSpec = ctx.spec
        return PointResult(
            p.norm,
            "compiled" if p.impl == "compiled" else p.impl,
            str(ctx.device),
            p.dtype,
            p.tokens,
            spec.hidden,
            p.mode,
            status,
            error,
            block=spec.family if p.mode != STEP_MODE else f"{spec.family} stack×{spec.step_depth}",
            placement=p.placement,
        )

    def failure(self, p: BlockPoint, ctx: Context, exc: BaseException) -> PointResult:
        return failure_result(self, p, ctx, exc)

    # -- prepare: build → gate → timed callable -------------------------------------------------
    def prepare(self, p: BlockPoint, ctx: Context) -> BlockPrepared | PointResult:
        spec: BlockSweepSpec = ctx.spec
        impl = "eager" if p.impl == "compiled" else p.impl
        why = block_unsupported(spec.family, p.norm, p.placement, impl, spec.hidden, NormConfig())
        if why:
            return self.result(p, ctx, "skipped", why)
        if p.mode == STEP_MODE:
            return self._prepare_step(p, ctx)
        cfg = _config(spec, p)
        dtype = _dtype(p.dtype)
        batch = p.tokens // spec.seq_len
        block = build_block(cfg, ctx.device, dtype, spec.seed)
        x = block_input(cfg, batch, spec.seq_len, ctx.device, dtype, spec.seed)
        training = p.mode != "fwd"
        res = self.result(p, ctx, "ok", None)
        fn: Callable[..., Any] = block
        compiled = None
        if p.impl == "compiled":
            compiled = compiling.compile_fresh(block)
            fn = compiled
            with compiling.first_calls() as t:
                errs = _errors(fn, block, x, training, spec.seed)
                sync(ctx.device)
            res.compile_s = t["compile_s"]
        else:
            errs = _errors(fn, block, x, training, spec.seed)
        verdict = self._gate(p, ctx, cfg, errs, training)
        res.max_abs_err, res.max_rel_err, res.rel_l2_err = errs.max_abs, errs.max_rel, errs.rel_l2
        res.gate, res.gate_note, res.error_multiple = verdict.level, verdict.note, verdict.multiple
        if not verdict.timed:
            res.status, res.error = "failed", f"correctness: {verdict.note}"
            return res
        params = [q for q in block.parameters() if q.requires_grad]
        if training:
            xg = x.detach().requires_grad_(True)
            gen = torch.Generator(device=ctx.device).manual_seed(spec.seed + 1)
            dy = torch.randn(x.shape, generator=gen, device=ctx.device, dtype=torch.float32).to(dtype)

            def call():
                return torch.autograd.grad(fn(xg), [xg, *params], dy)

        else:

            def call():
                with torch.no_grad():
                    return fn(x)

        if compiled is not None:
            with compiling.steady_state():
                compiling.verify_compiled(call, sync=lambda: sync(ctx.device))
        return BlockPrepared(p, res, call, compiled is not None, block, verdict)

    def _gate(self, p: BlockPoint, ctx: Context, cfg: BlockConfig, errs: Errors, training: bool) -> Verdict:
        spec: BlockSweepSpec = ctx.spec
        n = max(cfg.hidden, cfg.ffn_size, p.tokens if training else 0)

        def fp32() -> Errors:
            block32 = build_block(cfg, ctx.device, torch.float32, spec.seed)
            x32 = block_input(cfg, p.tokens // spec.seq_len, spec.seq_len, ctx.device, torch.float32, spec.seed)
            return _errors(block32, block32, x32, training, spec.seed)

        return classify(errs, p.dtype, n, fp32, roundings=BLOCK_ROUNDINGS)

    def _prepare_step(self, p: BlockPoint, ctx: Context) -> BlockPrepared | PointResult:
        spec: BlockSweepSpec = ctx.spec
        if p.impl == "compiled":
            return self.result(
                p, ctx, "skipped", "the training step is timed eager and native; compiled blocks are timed alone"
            )
        cfg = _config(spec, p)
        dtype = _dtype(p.dtype)
        stack = build_stack(StackConfig(cfg, depth=spec.step_depth or 1, vocab=VOCAB), ctx.device, dtype, spec.seed)
        batch = p.tokens // spec.seq_len
        gen = torch.Generator(device=ctx.device).manual_seed(spec.seed)
        tokens = torch.randint(0, VOCAB, (batch, spec.seq_len + 1), generator=gen, device=ctx.device)
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        errs = _errors(stack, stack, inp, True, spec.seed)
        verdict = self._gate(p, ctx, cfg, errs, True)
        res = self.result(p, ctx, "ok", None)
        res.max_abs_err, res.max_rel_err, res.rel_l2_err = errs.max_abs, errs.max_rel, errs.rel_l2
        res.gate, res.gate_note, res.error_multiple = verdict.level, verdict.note, verdict.multiple
        if not verdict.timed:
            res.status, res.error = "failed", f"correctness: {verdict.note}"
            return res
        opt = make_optimizer(stack, lr=1e-5)

        def call():
            return train_step(stack, opt, inp, tgt, clip_norm=1.0)

        res.extra["step"] = {"depth": spec.step_depth, "batch": batch, "seq_len": spec.seq_len, "vocab": VOCAB}
        return BlockPrepared(p, res, call, False, stack, verdict)

    # -- finish: stats → component breakdown → memory → energy ------------------------------------
    def finish(
        self, prep: BlockPrepared, m: Measurement, ctx: Context, sensors: dict | None, unstable: str | None
    ) -> PointResult:
        res = record_timing(prep.result, m, ctx, sensors, unstable)
        s = m.stats
        res.extra["components"] = component_breakdown(prep, ctx, s.p50_us)
        peak = peak_increment(prep.call, ctx.device)
        res.peak_bytes, res.peak_note = peak.value, peak.reason
        measure_energy(prep.point.tokens, ctx, prep.call, res)
        return res


def failure_result(kind: Any, p: Any, ctx: Context, exc: BaseException) -> PointResult:
    """A whole-module point that raised, stored failed with the reason (blocks, models): a compile fallback as
    it says, an out-of-memory with the device's cache let go first."""
    if isinstance(exc, compiling.CompileFallback):
        return kind.result(p, ctx, "failed", str(exc))
    release(ctx.device)
    if isinstance(exc, torch.OutOfMemoryError):
        return kind.result(p, ctx, "failed", f"out of memory: {first_line(exc)}")
    return kind.result(p, ctx, "failed", first_line(exc))


def record_timing(
    res: PointResult, m: Measurement, ctx: Context, sensors: dict | None, unstable: str | None
) -> PointResult:
    """A whole-module point's timing into its result (blocks, models): the samples' statistics, the timer, the
    sensors, and the status the rounds and the gate gave it (unstable, imprecise, or as it was)."""
    s = m.stats
    res.timing_method, res.threads = m.method, m.threads
    res.n_samples, res.calls_per_sample = s.n, m.calls_per_sample
    res.p20_us, res.p50_us, res.p80_us, res.mean_us, res.iqr_us = s.p20_us, s.p50_us, s.p80_us, s.mean_us, s.iqr_us
    res.noisy = s.noisy
    res.cache_state = getattr(ctx.timer, "cache_state", None)
    if sensors is not None:
        res.extra["sensors"] = sensors
    if unstable:
        res.status, res.error = "unstable", unstable
    elif res.gate == "imprecise":
        res.status = "imprecise"
    return res


def component_breakdown(prep: BlockPrepared, ctx: Context, p50_us: float, calls: int = 3) -> dict[str, Any]:
    """Time per call by component from one profiled session of ``calls`` calls.

    CPU: each range's CPU time (its ops and their dispatch); CUDA: the device time of the kernels launched
    inside each range; backward work is added to the range whose forward created it
    (``_backward_by_component``). "other" is the profiled wall time per call not inside any range (embedding, head and
    optimizer for a step; launch gaps). The profiler's own overhead is stated: profiled ÷ un-profiled p50.
    """
    if prep.compiled:
        return {"note": "a compiled block is one graph: its ranges are compiled away, so it is not broken down"}
    cuda = ctx.device.type == "cuda"
    with quiet_profile(cuda=cuda):
        prep.call()
        sync(ctx.device)
    import time

    with quiet_profile(cuda=cuda) as prof:
        t0 = time.perf_counter()
        for _ in range(calls):
            prep.call()
        sync(ctx.device)
        wall_us = (time.perf_counter() - t0) / calls * 1e6
    totals = dict.fromkeys(BLOCK_COMPONENTS, 0.0)
    events = list(prof.events())
    for e in events:
        if e.name in totals and not _nested_in_same(e):
            totals[e.name] += float(e.device_time_total if cuda else e.cpu_time_total)
    backward = _backward_by_component(events, cuda)
    for k, v in backward.items():
        totals[k] += v
    per_call = {k: v / calls for k, v in totals.items()}
    attributed = sum(per_call.values())
    total = max(wall_us, attributed) if not cuda else max(attributed, p50_us)
    per_call["other"] = max(0.0, total - attributed)
    shares = {k: 100.0 * v / total for k, v in per_call.items()} if total else {}
    return {
        "unit": "cuda kernel time" if cuda else "cpu time",
        "us_per_call": per_call,
        "share_pct": shares,
        "profiled_us_per_call": wall_us,
        "attributed_us_per_call": attributed,
        "profiler_overhead_pct": 100.0 * (wall_us / p50_us - 1.0) if p50_us else None,
        "calls": calls,
        "backward_us_per_call": {k: v / calls for k, v in backward.items()},
    }


BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


def _backward_by_component(events: list[Any], cuda: bool) -> dict[str, float]:
    """Backward work charged to the component whose forward created it.

    Autograd runs backward outside the forward's ``record_function`` ranges, so without this a norm's
    backward kernels would land in 'other' and a fwd+bwd share would count the norm's forward only. Each
    backward node's profiler event (``autograd::engine::evaluate_function: XBackward0``) carries the
    ``sequence_nr`` of the forward op that recorded it, on the forward's thread. Every op records the number
    the next node will take, so the node's creator is the *last* op to start with that number on that thread
    (an op that makes no node shares the number with the next one that does); its innermost component range
    names the component. Nodes whose forward ran outside every range (loss, embedding, head) stay in 'other'.
    """
    owner: dict[tuple[int, int], str | None] = {}
    forward = [
        e
        for e in events
        if (getattr(e, "sequence_nr", -1) or -1) >= 0
        and not getattr(e, "fwd_thread", 0)  # set only on backward nodes (XBackward0 and their engine events)
        and not e.name.startswith(BACKWARD_PREFIX)
        and e.name not in BLOCK_COMPONENTS
    ]
    for e in sorted(forward, key=lambda e: e.time_range.start):
        p = e.cpu_parent
        while p is not None and p.name not in BLOCK_COMPONENTS:
            p = p.cpu_parent
        owner[(e.thread, e.sequence_nr)] = p.name if p is not None else None
    out: dict[str, float] = {}
    for e in events:
        if not e.name.startswith(BACKWARD_PREFIX):
            continue
        name = owner.get((getattr(e, "fwd_thread", None), getattr(e, "sequence_nr", -1)))
        if name is not None:
            out[name] = out.get(name, 0.0) + float(e.device_time_total if cuda else e.cpu_time_total)
    return out


def _nested_in_same(e: Any) -> bool:
    """A range inside a range of the same name (a norm inside the fused add+norm) is counted once."""
    p = e.cpu_parent
    while p is not None:
        if p.name == e.name:
            return True
        p = p.cpu_parent
    return False


BLOCKS = BlockKind()
