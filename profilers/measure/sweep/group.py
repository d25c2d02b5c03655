"""One group of points timed together: prepare every candidate, interleave their visits, finish each.

The runner hands over the points that share device, shape, dtype and mode; this
module prepares them (gate, compile, one shared input set per variant), shuts
the compile workers down, times the survivors in interleaved rounds
(``rounds.py``), then finishes each point (statistics from its clean visits,
paired ratio to the group's baseline, memory, energy, kernels) and returns the
results in the order the points came.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from ...analysis.footprint import does_not_fit, point_bytes
from ...analysis.noise import bootstrap_median_ci, seed_for
from ...runs import checkpoint
from ...spec import Point
from ...store.records import PointResult
from ..instruments import compile as compiling
from ..instruments.memory import available_bytes
from ..instruments.timing import Measurement
from ..machine.disturbance import (
    BUSY_ROUNDS_MAX_DIV,
    OTHERS_CORES_MAX,
    RUNQ_WAIT_MAX,
    STEAL_MAX,
    WORKLOAD_SLOWDOWNS,
    NullProbe,
    VisitWindow,
)
from ..machine.placement import Placement
from .point import ERRORS, Context, Prepared, failure, finish, forget_references, prepare
from .rounds import GroupResult, run_rounds, too_wide

Announce = Callable[[Point, PointResult | None], None]


VISIT_SAMPLES = 3  # per visit of a kernel or block: a point gets rounds × this at least


class Kind(Protocol):
    """What a group needs from a kind of point (kernel points here, block points in ``labs/blocks/measure.py``)."""

    default_baseline: str
    run_kind: str  # the stored run's kind (registry.LABS)
    visit_samples: int  # the fewest samples a visit of a round takes (the visit's budget may buy more)
    # True: each point allocates its own tensors and is checked against the memory left as it comes; False: a
    # group's points share what begin_group checked once (one model), so a point is not held to it again
    points_own_memory: bool

    def key(self, p: Any) -> str: ...

    def need_bytes(self, p: Any, spec: Any) -> int: ...

    def prepare(self, p: Any, ctx: Any) -> Any: ...  # a Prepared, or a skipped/failed PointResult

    def finish(
        self, prep: Any, m: Measurement, ctx: Any, sensors: dict | None, unstable: str | None
    ) -> PointResult: ...

    def result(self, p: Any, ctx: Any, status: str, error: str | None) -> PointResult: ...

    def failure(self, p: Any, ctx: Any, exc: BaseException) -> PointResult: ...

    def check(self, spec: Any) -> None: ...  # refuse what the spec alone cannot show (SpecError), before a run

    def begin_group(self, points: Sequence[Any], ctx: Any) -> str | None: ...  # why the group cannot fit, or None

    def close(self) -> None: ...  # the run ended: drop what the kind kept across groups


class KernelKind:
    """Kernel points: one norm call (``point.py``)."""

    default_baseline = "layernorm native"
    run_kind = "kernels"
    visit_samples = VISIT_SAMPLES
    points_own_memory = True

    def check(self, spec: Any) -> None:
        """A kernel sweep's spec checks itself."""

    def begin_group(self, points: Sequence[Any], ctx: Any) -> str | None:
        """Each point is checked against the memory left as the ones before it allocate."""
        return None

    def close(self) -> None:
        """Nothing is kept across groups."""

    def key(self, p: Point) -> str:
        return f"{p.variant} {p.impl}"

    def need_bytes(self, p: Point, spec: Any) -> int:
        return point_bytes(p.variant, p.impl, p.mode, p.dtype, p.tokens, p.hidden)

    def prepare(self, p: Point, ctx: Context) -> Prepared | PointResult:
        return prepare(p, ctx)

    def finish(self, prep: Prepared, m: Measurement, ctx: Context, sensors: dict | None, unstable: str | None):
        return finish(prep, m, ctx, sensors, unstable)

    def result(self, p: Point, ctx: Context, status: str, error: str | None) -> PointResult:
        return PointResult.for_point(p, str(ctx.device), status, error)

    def failure(self, p: Point, ctx: Context, exc: BaseException) -> PointResult:
        return failure(p, ctx, exc)


KERNELS = KernelKind()


def baseline_index(keys: Sequence[str], wanted: str | None, default: str) -> int:
    """The spec's baseline when it is in the group, else the kind's default, else the first candidate."""
    for choice in (wanted, default):
        if choice in keys:
            return keys.index(choice)
    return 0


def _merge_sensors(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-visit sampler summaries merged: means weighted by samples, the max of maxima."""
    parts = [p for p in parts if p and p.get("samples")]
    if not parts:
        return None
    n = sum(p["samples"] for p in parts)
    out: dict[str, Any] = {"samples": n, "window_s": sum(p.get("window_s") or 0.0 for p in parts)}
    keys = {k for p in parts for k, v in p.items() if isinstance(v, dict)}
    for k in sorted(keys):
        vals = [(p[k], p["samples"]) for p in parts if isinstance(p.get(k), dict) and p[k].get("mean") is not None]
        if vals:
            out[k] = {
                "mean": sum(v["mean"] * w for v, w in vals) / sum(w for _, w in vals),
                "max": max(v["max"] for v, _ in vals),
            }
    return out


def measure_group(
    points: Sequence[Any],
    ctx: Context,
    probe: Any = None,
    announce: Announce | None = None,
    on_round: Callable[[int], None] | None = None,
    kind: Kind = KERNELS,
) -> list[PointResult]:
    """Results for ``points`` (same order), timed in interleaved rounds."""
    probe = probe or NullProbe("no disturbance probe for this run")
    ctx.inputs_cache.clear()
    compiling.reset()
    results: dict[int, PointResult] = {}
    prepared: list[tuple[int, Prepared]] = []
    group_why = kind.begin_group(points, ctx)  # a kind whose points share one model checks the group once
    for i, p in enumerate(points):
        checkpoint()  # a cancel stops the group between points (a compile may take a while)
        if announce:
            announce(p, None)
        if group_why is not None or not kind.points_own_memory:
            why = group_why
        else:
            why = does_not_fit(kind.need_bytes(p, ctx.spec), *available_bytes(ctx.device))
        try:
            prep = kind.result(p, ctx, "skipped", why) if why else kind.prepare(p, ctx)
        except (compiling.CompileFallback, torch.OutOfMemoryError, *ERRORS) as e:
            prep = kind.failure(p, ctx, e)
        if isinstance(prep, PointResult):
            results[i] = prep
            if announce:
                announce(p, prep)
        else:
            prepared.append((i, prep))
    forget_references(ctx)
    if any(prep.compiled for _, prep in prepared):
        note = compiling.quiesce()
        for _, prep in prepared:
            if note and prep.compiled:
                prep.result.extra["compile_workers"] = note
    if prepared:
        before = ctx.memory_state() if ctx.memory_state else None
        timed = _timed(prepared, ctx, probe, on_round, kind)
        if before is not None and ctx.memory_state:
            state = {"copy_gbps": [before, ctx.memory_state()]}
            for res in timed.values():
                res.extra["memory_state"] = state
        if ctx.judge_group is not None:
            ctx.judge_group(list(timed.values()))
        for i, res in timed.items():
            results[i] = res
            if announce:
                announce(points[i], res)
    ctx.inputs_cache.clear()
    return [results[i] for i in range(len(points))]


def _timed(
    prepared: list[tuple[int, Prepared]], ctx: Context, probe: Any, on_round: Callable[[int], None] | None, kind: Kind
) -> dict[int, PointResult]:
    spec = ctx.spec
    preps = [prep for _, prep in prepared]
    keys = [kind.key(p.point) for p in preps]
    base = baseline_index(keys, spec.baseline, kind.default_baseline)
    visit_budget = spec.budget_ms / spec.rounds
    rewarm = max(2.0, spec.warmup_ms / 5)
    samples_meta: dict[int, tuple[str, int, int | None]] = {}
    dispatch: dict[int, list[float]] = {i: [] for i in range(len(preps))}  # host launch µs per call, per visit
    sensors: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(preps))}
    errors: dict[int, BaseException] = {}
    spans: dict[int, tuple[float, float]] = {}  # first visit's start, last visit's end (sampler seconds)
    group_seed = seed_for(spec.seed, preps[0].point.tokens, preps[0].point.dtype, preps[0].point.mode)
    placement = Placement(
        ctx.device,
        seed_for(group_seed, "placement"),
        [lst for p in preps for lst in getattr(p, "movable", ())],
        mode=getattr(spec, "cpu_placement", "round"),
    )

    def visit(i: int, r: int) -> tuple[Sequence[float], VisitWindow] | None:
        checkpoint()  # a cancel stops the rounds between visits
        if i in errors:
            return None
        placement.new_round(r)
        prep = preps[i]
        token = probe.begin()
        t0 = ctx.sampler.now_s() if ctx.sampler else None
        try:
            with prep.steady():
                m = ctx.timer.measure(prep.call, warmup_ms=spec.warmup_ms if r == 0 else rewarm, budget_ms=visit_budget)
        except (compiling.CompileFallback, torch.OutOfMemoryError, *ERRORS) as e:
            errors[i] = e
            return None
        verdict = probe.end(token)
        if ctx.sampler is not None and t0 is not None:
            t1 = ctx.sampler.now_s()
            sensors[i].append(ctx.sampler.summary(t0, t1))
            first, _ = spans.get(i, (t0, t1))
            spans[i] = (first, t1)
        samples_meta[i] = (m.method, m.calls_per_sample, m.threads)
        if m.dispatch_us is not None:
            dispatch[i].append(m.dispatch_us)
        return m.samples_us, verdict

    group = run_rounds(
        len(preps),
        visit,
        baseline=base,
        rounds=spec.rounds,
        ci_target_pct=spec.ci_target_pct,
        seed=group_seed,
        keys=keys,
        on_round=on_round,
    )
    placement.close()
    out: dict[int, PointResult] = {}
    for k, ((i, prep), cand) in enumerate(zip(prepared, group.candidates)):
        if k in errors:
            out[i] = kind.failure(prep.point, ctx, errors[k])
            continue
        merged = _merge_sensors(sensors[k])
        if merged is None and ctx.sampler is not None and k in spans:
            # visits shorter than the sample period: the span of the point's rounds, others' visits interleaved
            merged = ctx.sampler.summary(*spans[k])
            merged["window_note"] = "the span of the point's rounds (other candidates' visits interleaved)"
        try:
            out[i] = _finish_one(k, prep, cand, group, ctx, samples_meta[k], merged, kind, dispatch[k])
            if placement.describe():
                out[i].extra["placement"] = placement.describe()
        except (compiling.CompileFallback, torch.OutOfMemoryError, *ERRORS) as e:
            out[i] = kind.failure(prep.point, ctx, e)
    return out


def _finish_one(
    k: int,
    prep: Prepared,
    cand: Any,
    group: GroupResult,
    ctx: Context,
    meta: tuple[str, int, int | None],
    sensors: dict[str, Any] | None,
    kind: Kind,
    dispatch_us: Sequence[float] = (),
) -> PointResult:
    method, calls_per_sample, threads = meta
    launch = statistics.median(dispatch_us) if dispatch_us else None
    m = Measurement(method, tuple(cand.clean_samples_us()), calls_per_sample, threads, dispatch_us=launch)
    iv = group.intervals[k]
    unstable = None
    if group.unstable[k]:
        what = "its median" if k == group.baseline else "its ratio to the baseline"
        unstable = too_wide(what, iv.half_width_pct, group.ci_target_pct, f" after {len(cand.visits)} rounds")
    with prep.steady():
        res = kind.finish(prep, m, ctx, sensors, unstable)
    base = group.candidates[group.baseline]
    res.rounds = len(cand.visits)  # a candidate precise enough leaves the added rounds early
    res.visits = len(cand.visits) + cand.retried
    res.visits_disturbed = cand.retried + cand.disturbed
    res.ratio_baseline = base.key
    if k == group.baseline:
        res.ratio = res.ratio_lo = res.ratio_hi = 1.0
    else:
        res.ratio, res.ratio_lo, res.ratio_hi = iv.value, iv.lo, iv.hi
    rounds_us = cand.round_medians_us
    res.extra["rounds_us"] = rounds_us
    res.extra["rounds_index"] = [v.round for v in cand.visits]  # pairs are made on these (see rounds.py)
    _, lo, hi = bootstrap_median_ci(rounds_us, seed_for(ctx.spec.seed, cand.key, "p50"))
    res.extra["p50_ci_us"] = [lo, hi]
    res.extra["disturbance"] = _disturbance_summary(cand)
    busy = res.extra["disturbance"].get("summary")
    if cand.disturbed:
        res.extra["busy"] = (
            f"measured while the machine was busy ({cand.disturbed} of {len(cand.visits)} rounds): {busy}"
        )
        if res.status in ("ok", "imprecise") and cand.disturbed * BUSY_ROUNDS_MAX_DIV > len(cand.visits):
            res.status = "unstable"
            res.error = res.extra["busy"]
    return res


_SIGNS = (
    ("runq_wait_share", RUNQ_WAIT_MAX, "waited up to {:.0%} of the time for a CPU"),
    ("others_cores", OTHERS_CORES_MAX, "other processes used up to {:.2f} cores"),
    ("steal_share", STEAL_MAX, "the hypervisor stole up to {:.1%}"),
)


def _disturbance_summary(cand: Any) -> dict[str, Any]:
    """What the probe saw over a candidate's kept visits, as maxima, and a sentence naming what was over."""
    verdicts = [v.verdict for v in cand.visits]
    out: dict[str, Any] = {"retried_visits": cand.retried, "kept_disturbed_visits": cand.disturbed}
    not_measured = next((v.not_measured for v in verdicts if v.not_measured), None)
    if not_measured:
        out["not_measured"] = not_measured
        return out
    parts = []
    for key, limit, text in _SIGNS:
        vals = [getattr(v, key) for v in verdicts if getattr(v, key) is not None]
        if vals:
            out[f"max_{key}"] = max(vals)
            if max(vals) > limit:
                parts.append(text.format(max(vals)))
    slow = sorted({v.gpu_slowdown for v in verdicts if v.gpu_slowdown})
    if slow:
        out["gpu_slowdowns"] = slow
        names = sorted({n for s in slow for n in s.split(", ")})
        disturbing = [n for n in names if n not in WORKLOAD_SLOWDOWNS]
        if disturbing:
            parts.append("GPU clocks slowed (" + "; ".join(disturbing) + ")")
        capped = sum(1 for v in verdicts if v.gpu_slowdown and "power cap" in v.gpu_slowdown.split(", "))
        if capped:
            out["power_capped_visits"] = capped
            parts.append(f"GPU at its power cap in {capped} of {len(verdicts)} rounds (the workload's own cost)")
    if parts:
        out["summary"] = "; ".join(parts)
    return out
