"""Rank variant × implementation for a target, and check published claims.

Every considered candidate is listed, ranked or not: a point that failed its
gate, one that is unstable or imprecise (left out of the ranking unless asked
for), and one never measured, each with its reason. Ranked candidates are
compared with the cheapest through ``noise.ratio_between``: paired per-round
ratios when they were timed in the same interleaved rounds, otherwise the best
honest interval, and decided against a margin of practical equivalence
(``analysis/equivalence``, ±2% for a kernel by default): faster or slower by
more than the margin, equivalent within it (tied with the cheapest: the simpler
implementation is then recommended, and the headline says so), or undecided
(with how many rounds would decide it). A lead is stated as one a rerun on the
machine keeps only where its rerun interval (``analysis/rerun``: the run's
interval widened by the machine's calibrated between-run spread) excludes 1;
otherwise it holds "in this run", and each line says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import KERNEL_IMPLS as IMPLS
from ..catalog import KERNEL_MARGIN_PCT, VARIANTS, label, unsupported_reason
from ..catalog import Config as _Config
from ..spec import SweepSpec, default_spec
from . import equivalence as eq
from . import rerun as rerun_
from .noise import Ratio, band_pct, ratio_between

DEFAULT_VARIANTS = ("layernorm", "rmsnorm", "dyt")
RANKED_BY_DEFAULT = ("ok",)


@dataclass(frozen=True)
class Target:
    tokens: int
    hidden: int
    dtype: str = "bfloat16"
    mode: str = "fwd"  # fwd: inference, fwdbwd: training
    metric: str = "time"  # time | energy
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    include: tuple[str, ...] = RANKED_BY_DEFAULT  # statuses that may be ranked (ok; imprecise, unstable on request)

    @property
    def unit(self) -> str:
        return "µs" if self.metric == "time" else "mJ/call"


@dataclass(frozen=True)
class Candidate:
    variant: str
    impl: str
    value: float  # p50 µs or mJ per call
    noise_pct: float
    run_id: int
    tokens: int
    hidden: int
    noisy: bool
    status: str = "ok"
    point: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return label(self.variant, self.impl)


@dataclass(frozen=True)
class Considered:
    """A candidate the user asked about that is not in the ranking, and why."""

    variant: str
    impl: str
    status: str  # failed | skipped | imprecise | unstable | not measured | not supported
    reason: str

    @property
    def name(self) -> str:
        return label(self.variant, self.impl)


def versus(ref: Candidate, other: Candidate, metric: str = "time") -> Ratio:
    """``other`` / ``ref`` with its 95% interval (``measurable`` when the interval excludes 1)."""
    return ratio_between(ref.point or _as_point(ref), other.point or _as_point(other), metric)


def rounds_of(p: dict[str, Any]) -> int | None:
    """How many rounds a point's interval rests on (None for a point stored without its rounds)."""
    return len((p.get("extra") or {}).get("rounds_us") or ()) or None


def verdict_between(ref: Candidate, other: Candidate, metric: str = "time", margin_pct: float = KERNEL_MARGIN_PCT):
    """``other`` against ``ref`` decided at ±``margin_pct`` (``equivalence.judge`` over ``versus``)."""
    r = versus(ref, other, metric)
    return eq.from_ratio(r, margin_pct, _rounds(ref.point, other.point))


def _as_point(c: Candidate) -> dict[str, Any]:
    half = c.noise_pct / 100.0 * c.value
    return {"p50_us": c.value, "p20_us": c.value - half, "p80_us": c.value + half, "energy_mj_per_call": c.value}


@dataclass
class Ranking:
    target: Target
    candidates: list[Candidate] = field(default_factory=list)
    tiers: list[list[Candidate]] = field(default_factory=list)
    headline: str = ""
    lines: list[str] = field(default_factory=list)
    shape_note: str | None = None
    missing: str | None = None
    left_out: list[Considered] = field(default_factory=list)
    interval_note: str = ""  # which interval the lines rest on: the runs' own, or rerun intervals
    margin_pct: float = KERNEL_MARGIN_PCT
    verdicts: dict[str, eq.Verdict] = field(default_factory=dict)  # each candidate's against the cheapest, by name
    pick: Candidate | None = None  # the recommendation: the cheapest, or the simplest of those equivalent to it

    @property
    def decided(self) -> bool:
        """The recommendation beats every other candidate by more than the margin, or ties only with ones
        equivalent within it (no undecided comparison left)."""
        return self.pick is not None and not any(v.kind == eq.UNDECIDED for v in self.verdicts.values())


def _value(p: dict[str, Any], metric: str) -> float | None:
    return p.get("p50_us") if metric == "time" else p.get("energy_mj_per_call")


def _pool(points: Iterable[dict[str, Any]], t: Target) -> tuple[list[dict[str, Any]], str | None]:
    """Points of the target's dtype, mode, hidden and variants at the target token count, or the nearest one."""
    pool = [
        p
        for p in points
        if p["dtype"] == t.dtype and p["mode"] == t.mode and p["variant"] in t.variants and p["hidden"] == t.hidden
    ]
    timed = [p for p in pool if _value(p, t.metric) is not None]
    if not pool:
        return [], None
    exact = [p for p in pool if p["tokens"] == t.tokens]
    if exact:
        return exact, None
    nearest = min({p["tokens"] for p in timed or pool}, key=lambda n: abs(math.log(n / t.tokens)))
    return [p for p in pool if p["tokens"] == nearest], (
        f"no point at {t.tokens} tokens; using the nearest measured, {nearest}×{t.hidden}"
    )


def candidates(points: Iterable[dict[str, Any]], t: Target) -> tuple[list[Candidate], str | None]:
    """The newest rankable point per (variant, impl) at the target shape (or the nearest token count)."""
    ranked, _, note = _split(points, t)
    return ranked, note


def _split(points: Iterable[dict[str, Any]], t: Target) -> tuple[list[Candidate], list[Considered], str | None]:
    pool, note = _pool(points, t)
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for p in pool:
        key = (p["variant"], p["impl"])
        if key not in newest or p["run_id"] > newest[key]["run_id"]:
            newest[key] = p
    ranked: list[Candidate] = []
    left: list[Considered] = []
    for (variant, impl), p in newest.items():
        value = _value(p, t.metric)
        status = p["status"]
        if status in t.include and value is not None:
            ranked.append(
                Candidate(
                    variant,
                    impl,
                    float(value),
                    band_pct(p, t.metric),
                    p["run_id"],
                    p["tokens"],
                    p["hidden"],
                    bool(p.get("noisy")),
                    status,
                    p,
                )
            )
        elif status in ("imprecise", "unstable") and value is not None:
            why = p.get("gate_note") if status == "imprecise" else p.get("error")
            left.append(Considered(variant, impl, status, f"left out of the ranking ({why}); include it to rank it"))
        elif value is None and status in ("ok", "imprecise", "unstable"):
            left.append(Considered(variant, impl, "not measured", f"no {t.metric} reading: {_energy_why(p)}"))
        else:
            left.append(Considered(variant, impl, status, p.get("error") or status))
    return sorted(ranked, key=lambda c: c.value), left, note


def _energy_why(p: dict[str, Any]) -> str:
    return p.get("energy_note") or "energy was not measured (run with --energy)"


def unmeasured(
    ranked: Sequence[Candidate], left: Sequence[Considered], t: Target, device: str, impls: Iterable[str]
) -> list[Considered]:
    """Considered variant × implementation pairs with no point at all: unsupported (with why) or not measured."""
    seen = {(c.variant, c.impl) for c in ranked} | {(c.variant, c.impl) for c in left}
    out = []
    device_type = device.split(":")[0]
    for variant in t.variants:
        for impl in impls:
            if (variant, impl) in seen:
                continue
            why = unsupported_reason(variant, impl, device_type, t.tokens, t.hidden, _Config(), t.dtype, t.mode)
            if why:
                out.append(Considered(variant, impl, "not supported", why))
            else:
                out.append(Considered(variant, impl, "not measured", "no point for this target in the chosen runs"))
    return out


def saving_text(r: Ratio) -> tuple[float, float, float]:
    """(saving %, CI low %, CI high %) when the cheaper one replaces the other: 1 − 1/ratio, in %."""
    return 100.0 * (1 - 1 / r.value), 100.0 * (1 - 1 / r.lo), 100.0 * (1 - 1 / r.hi)


def rerun_between(ref: Candidate, other: Candidate, r: Ratio) -> rerun_.Rerun | None:
    """Where a rerun on this machine puts ``r`` (other / ref), when both were timed in the same rounds of a
    calibrated run (or one of spread processes); None otherwise."""
    return rerun_.rerun_for(r, other.point) or rerun_.rerun_for(r, ref.point) if r.method.startswith("paired") else None


def _phrase(ref: Candidate, other: Candidate, metric: str, v: eq.Verdict) -> str:
    """One line of the ranking: ``other`` against the cheapest, ``ref``, by its verdict at the margin."""
    m = f"±{v.margin_pct:g}%"
    if v.kind != eq.SLOWER:
        return v.sentence(other.name, ref.name)
    r = versus(ref, other, metric)
    s, lo, hi = saving_text(r)
    what = "time" if metric == "time" else "energy per call"
    times = f" ({r.value:.2f}× as much)" if r.value >= 1.5 else ""
    line = (
        f"{ref.name} saves {s:.1f}% of the {what} of {other.name}{times}; 95% interval {lo:.1f}% to {hi:.1f}%, "
        f"beyond the {m} margin"
    )
    again = rerun_between(ref, other, r) if metric == "time" else None
    if again is None:
        return line
    if again.excludes_one:
        return f"{line}; a rerun keeps the lead ({rerun_.interval_text(again)})"
    return f"{line} in this run; a rerun may not agree ({rerun_.interval_text(again)})"


def _headline(best: Candidate, ranked: Sequence[Candidate], verdicts: dict[str, eq.Verdict], metric: str) -> tuple:
    """The recommendation and its sentence: among the cheapest and those equivalent to it, the simplest."""
    m = f"±{verdicts[ranked[1].name].margin_pct:g}%" if len(ranked) > 1 else ""
    equal = [c for c in ranked[1:] if verdicts[c.name].kind == eq.EQUIVALENT]
    open_ = [c for c in ranked[1:] if verdicts[c.name].kind == eq.UNDECIDED]
    pick = min([best, *equal], key=lambda c: (eq.simplicity(c.impl), c.value))
    if len(ranked) == 1:
        return pick, f"Use {best.name}: the only candidate measured for this target."
    if pick is not best:
        v = verdicts[pick.name]
        text = (
            f"Use {pick.name}: equivalent within {m} to the cheapest here, {best.name} ({pick.name} "
            f"{v.change_text}), and simpler ({eq.SIMPLER_BECAUSE.get(pick.impl, pick.impl)})."
        )
    elif equal:
        names = ", ".join(c.name for c in equal)
        text = f"Use {best.name}: the cheapest, equivalent within {m} to {names}, and none of those is simpler."
    elif not open_:
        text = f"Use {best.name}: faster than every other candidate by more than the {m} margin."
        runner_up = ranked[1]
        again = None
        if metric == "time":
            again = rerun_between(best, runner_up, versus(best, runner_up, metric))
        if again is not None and not again.excludes_one:
            text = (
                f"{best.name} is the cheapest in this run, but a rerun on this machine may not keep its lead over "
                f"{runner_up.name} ({rerun_.interval_text(again)}): treat them as tied until a rerun agrees."
            )
        return pick, text
    else:
        text = f"{best.name} is the cheapest here, but not decided against every other at {m}."
    if open_:
        first = verdicts[open_[0].name]
        names = ", ".join(c.name for c in open_)
        text += f" Undecided against {names}: {first.decides}."
    return pick, text


def rank(
    points: Sequence[dict[str, Any]], t: Target, device: str = "cuda", margin_pct: float = KERNEL_MARGIN_PCT
) -> Ranking:
    """Every candidate for ``t``, ranked and decided against the cheapest at ±``margin_pct``."""
    eq.check_margin(margin_pct)
    ranked, left, note = _split(points, t)
    impls = [name for name, info in IMPLS.items() if device.split(":")[0] in info.devices]
    r = Ranking(t, ranked, shape_note=note, left_out=left + unmeasured(ranked, left, t, device, impls))
    r.margin_pct = margin_pct
    if not ranked:
        spec = suggest_spec(t, device)
        names = ", ".join(label(v) for v in t.variants)
        r.missing = (
            f"no rankable {t.metric} measurements for {names} at hidden {t.hidden}, {t.dtype}, {t.mode}: "
            f"run `python -m profilers run {cli_args(spec)}`"
        )
        return r
    best = ranked[0]
    r.verdicts = {c.name: verdict_between(best, c, t.metric, margin_pct) for c in ranked[1:]}
    remaining = list(ranked)
    while remaining:  # a tier: its head and every candidate not slower than it by more than the margin
        head = remaining[0]
        tier = [
            c
            for c in remaining
            if c is head or verdict_between(head, c, t.metric, margin_pct).kind in (eq.EQUIVALENT, eq.UNDECIDED)
        ]
        r.tiers.append(tier)
        remaining = [c for c in remaining if c not in tier]
    r.pick, r.headline = _headline(best, ranked, r.verdicts, t.metric)
    r.lines = [_phrase(best, c, t.metric, r.verdicts[c.name]) for c in ranked[1:]]
    calibrated = [c for c in ranked if rerun_.rerun_of_point(c.point)]
    if t.metric != "time":
        r.interval_note = "Ties and leads rest on each run's own 95% interval (reruns are calibrated for time only)."
    elif calibrated:
        source = (calibrated[0].point["extra"]["rerun"] or {}).get("between_source")
        r.interval_note = (
            "Ties rest on the run's own 95% interval; a lead is said to hold on a rerun only where its rerun "
            f"interval (between-run spread from {source}) excludes 1."
        )
    else:
        r.interval_note = (
            "Ties and leads rest on each run's own 95% interval, which covers that run's moment only: this "
            "machine's runs carry no rerun interval (run `python -m profilers calibrate`, then measure again)."
        )
    r.interval_note = f"{margin_note(margin_pct)} {r.interval_note}"
    return r


def margin_note(margin_pct: float) -> str:
    """How the verdicts are taken, in one sentence (Recommend, the claims check, the report)."""
    m = f"±{margin_pct:g}%"
    return (
        f"Verdicts at a margin of {m}: equivalent when the whole 95% interval lies inside {m} (two one-sided "
        f"tests), faster or slower when it lies beyond it, undecided when it crosses it."
    )


def suggest_spec(t: Target, device: str) -> SweepSpec:
    """The sweep that would answer ``t``: the device's default method, every implementation it runs."""
    device_type = device.split(":")[0]
    return default_spec(
        device,
        variants=t.variants,
        impls=tuple(name for name, info in IMPLS.items() if device_type in info.devices),
        shapes=((t.tokens, t.hidden),),
        dtypes=(t.dtype,),
        modes=(t.mode,),
        energy=t.metric == "energy",
    )


def cli_args(spec: SweepSpec) -> str:
    parts = [
        f"--device {spec.device}",
        f"--variants {','.join(spec.variants)}",
        f"--impls {','.join(spec.impls)}",
        f"--shapes {','.join(f'{a}x{b}' for a, b in spec.shapes)}",
        f"--dtypes {','.join(spec.dtypes)}",
        f"--modes {','.join(spec.modes)}",
    ]
    if spec.energy:
        parts.append("--energy")
    return " ".join(parts)


# -- claims -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimCheck:
    claim: str
    impl: str
    measured: str
    verdict: str
    diff_pct: float | None  # saving in % (time or energy), or DyT's change
    band_pct: float | None  # half-width of the interval, in %
    shape: str = ""
    method: str = ""
    rerun: str = "N/A: no calibration of this machine"  # whether a rerun on the machine is expected to agree
    decision: eq.Verdict | None = None  # the comparison decided at the margin


def _pairs(points: Sequence[dict[str, Any]], a: str, b: str, metric: str, dtype: str, mode: str):
    """Per implementation, the largest shape where both variants were measured (clean points only)."""
    by: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for p in points:
        if p["status"] != "ok" or p["dtype"] != dtype or p["mode"] != mode or _value(p, metric) is None:
            continue
        key = (p["variant"], p["impl"], p["tokens"], p["hidden"])
        if key not in by or p["run_id"] > by[key]["run_id"]:
            by[key] = p
    for impl in IMPLS:
        shapes = {(k[2], k[3]) for k in by if k[1] == impl and k[0] == a} & {
            (k[2], k[3]) for k in by if k[1] == impl and k[0] == b
        }
        if shapes:
            t, h = max(shapes, key=lambda s: s[0] * s[1])
            yield impl, by[(a, impl, t, h)], by[(b, impl, t, h)]


def _on_rerun(r: Ratio, a: dict[str, Any], b: dict[str, Any], v: eq.Verdict, verdict: str) -> tuple[str, str]:
    """The verdict as a rerun would leave it, and the sentence on the rerun: a verdict stands for a rerun only
    where the rerun interval (in every calibrated memory state) reaches the same verdict at the margin."""
    again = (rerun_.rerun_for(r, b) or rerun_.rerun_for(r, a)) if r.method.startswith("paired") else None
    if again is None:
        why = "not timed in the same rounds" if not r.method.startswith("paired") else "no calibration of this machine"
        return verdict, f"N/A: {why}"
    if v.kind == eq.UNDECIDED:
        return verdict, f"{rerun_.interval_text(again)}"
    on_rerun = eq.judge(again.value, again.lo_any, again.hi_any, v.margin_pct)
    if on_rerun.kind == v.kind:
        return verdict, f"a rerun agrees ({rerun_.interval_text(again)})"
    return f"{verdict} in this run; a rerun may not agree", rerun_.interval_text(again)


def claims_check(
    points: Sequence[dict[str, Any]], dtype: str, mode: str, margin_pct: float = KERNEL_MARGIN_PCT
) -> list[ClaimCheck]:
    """The published claims against the measured pairs, each decided at ±``margin_pct``."""
    eq.check_margin(margin_pct)
    out: list[ClaimCheck] = []
    for metric, claim in (
        ("time", "RMSNorm is 15-20% cheaper than LayerNorm"),
        ("energy", "RMSNorm uses 15-20% less energy than LayerNorm"),
    ):
        for impl, ln, rms in _pairs(points, "layernorm", "rmsnorm", metric, dtype, mode):
            r = ratio_between(ln, rms, metric)  # rms / ln
            v = eq.from_ratio(r, margin_pct, _rounds(ln, rms))
            saving, s_lo, s_hi = 100 * (1 - r.value), 100 * (1 - r.hi), 100 * (1 - r.lo)
            shape = f"{ln['tokens']}×{ln['hidden']}"
            verdict = eq.claimed_saving(v, 15.0, 20.0, "LayerNorm is cheaper here")
            if saving >= 0:
                measured = f"RMSNorm saves {saving:.1f}% (95% interval {s_lo:.1f}% to {s_hi:.1f}%) at {shape}"
            else:
                measured = f"RMSNorm costs {r.value:.2f}× LayerNorm (95% interval {r.lo:.2f}-{r.hi:.2f}×) at {shape}"
            verdict, again = _on_rerun(r, ln, rms, v, verdict) if metric == "time" else (verdict, "N/A: energy")
            out.append(ClaimCheck(claim, impl, measured, verdict, saving, (s_hi - s_lo) / 2, shape, r.method, again, v))
    for impl, ln, dyt in _pairs(points, "layernorm", "dyt", "time", dtype, mode):
        r = ratio_between(ln, dyt, "time")
        v = eq.from_ratio(r, margin_pct, _rounds(ln, dyt))
        shape = f"{ln['tokens']}×{ln['hidden']}"
        verdict = {
            eq.FASTER: f"confirmed here: {v.label}",
            eq.SLOWER: f"not confirmed: LayerNorm is faster here by more than ±{margin_pct:g}%",
            eq.EQUIVALENT: f"not supported: {v.label} here",
            eq.UNDECIDED: v.phrase(),
        }[v.kind]
        verdict, again = _on_rerun(r, ln, dyt, v, verdict)
        out.append(
            ClaimCheck(
                "DyT is faster than LayerNorm",
                impl,
                f"DyT takes {r.value:.2f}× LayerNorm's time (95% interval {r.lo:.2f}-{r.hi:.2f}×) at {shape}",
                verdict,
                r.diff_pct,
                r.half_width_pct,
                shape,
                r.method,
                again,
                v,
            )
        )
    return out


def _rounds(a: dict[str, Any], b: dict[str, Any]) -> int | None:
    n = [x for x in (rounds_of(a), rounds_of(b)) if x]
    return min(n) if n else None


__all__ = [
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "Candidate",
    "ClaimCheck",
    "Considered",
    "Ranking",
    "Target",
    "claims_check",
    "cli_args",
    "margin_note",
    "rank",
    "suggest_spec",
    "verdict_between",
    "versus",
]
