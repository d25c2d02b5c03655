"""Rank variant × implementation for a target, and check published claims.

Every considered candidate is listed, ranked or not: a point that failed its
gate, one that is unstable or imprecise (left out of the ranking unless asked
for), and one never measured, each with its reason. Ranked candidates are
compared with the cheapest through ``noise.ratio_between``: paired per-round
ratios when they were timed in the same interleaved rounds, otherwise the best
honest interval. A difference whose 95% interval contains 1 is a tie ("no
measurable difference") and is never ranked apart. A lead is stated as one a
rerun on the machine keeps only where its rerun interval (``analysis/rerun``:
the run's interval widened by the machine's calibrated between-run spread)
excludes 1; otherwise it holds "in this run", and each line says which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import KERNEL_IMPLS as IMPLS
from ..catalog import VARIANTS, label, unsupported_reason
from ..catalog import Config as _Config
from ..spec import SweepSpec, default_spec
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


def _phrase(ref: Candidate, other: Candidate, metric: str) -> str:
    r = versus(ref, other, metric)
    if not r.measurable:
        return (
            f"{other.name} and {ref.name}: no measurable difference "
            f"(ratio {r.value:.3f}, 95% interval {r.lo:.3f}-{r.hi:.3f} contains 1)"
        )
    s, lo, hi = saving_text(r)
    what = "time" if metric == "time" else "energy per call"
    times = f" ({r.value:.2f}× as much)" if r.value >= 1.5 else ""
    line = f"{ref.name} saves {s:.1f}% of the {what} of {other.name}{times}; 95% interval {lo:.1f}% to {hi:.1f}%"
    again = rerun_between(ref, other, r) if metric == "time" else None
    if again is None:
        return line
    if again.excludes_one:
        return f"{line}; a rerun keeps the lead ({rerun_.interval_text(again)})"
    return f"{line} in this run; a rerun may not agree ({rerun_.interval_text(again)})"


def rank(points: Sequence[dict[str, Any]], t: Target, device: str = "cuda") -> Ranking:
    ranked, left, note = _split(points, t)
    impls = [name for name, info in IMPLS.items() if device.split(":")[0] in info.devices]
    r = Ranking(t, ranked, shape_note=note, left_out=left + unmeasured(ranked, left, t, device, impls))
    if not ranked:
        spec = suggest_spec(t, device)
        names = ", ".join(label(v) for v in t.variants)
        r.missing = (
            f"no rankable {t.metric} measurements for {names} at hidden {t.hidden}, {t.dtype}, {t.mode}: "
            f"run `python -m profilers run {cli_args(spec)}`"
        )
        return r
    remaining = list(ranked)
    while remaining:
        head = remaining[0]
        tier = [c for c in remaining if c is head or not versus(head, c, t.metric).measurable]
        r.tiers.append(tier)
        remaining = [c for c in remaining if c not in tier]
    best = ranked[0]
    top = r.tiers[0]
    runner_up = r.tiers[1][0] if len(top) == 1 and len(r.tiers) > 1 else None
    again = None
    if runner_up is not None and t.metric == "time":
        again = rerun_between(best, runner_up, versus(best, runner_up, t.metric))
    if len(top) == 1 and again is not None and not again.excludes_one:
        r.headline = (
            f"{best.name} is the cheapest in this run, but a rerun on this machine may not keep its lead over "
            f"{runner_up.name} ({rerun_.interval_text(again)}): treat them as tied until a rerun agrees."
        )
    elif len(top) == 1:
        r.headline = f"Use {best.name}: it is the cheapest here, beyond the noise."
    else:
        r.headline = f"Tie: {', '.join(c.name for c in top)} are within the noise of each other; pick on other grounds."
    r.lines = [_phrase(best, c, t.metric) for c in ranked[1:]]
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
    return r


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


def _saving_verdict(lo: float, hi: float, low: float, high: float) -> str:
    if lo <= 0 <= hi:
        return "no measurable difference"
    if hi < 0:
        return "opposite: LayerNorm is cheaper here"
    if hi < low:
        return "smaller than claimed"
    if lo > high:
        return "larger than claimed"
    return "consistent with the claim"


def _on_rerun(r: Ratio, a: dict[str, Any], b: dict[str, Any], verdict: str) -> tuple[str, str]:
    """The verdict as a rerun would leave it, and the sentence on the rerun: a verdict other than "no
    measurable difference" stands only where the rerun interval excludes 1."""
    again = (rerun_.rerun_for(r, b) or rerun_.rerun_for(r, a)) if r.method.startswith("paired") else None
    if again is None:
        why = "not timed in the same rounds" if not r.method.startswith("paired") else "no calibration of this machine"
        return verdict, f"N/A: {why}"
    if not r.measurable:
        return verdict, f"{rerun_.interval_text(again)}"
    if again.excludes_one:
        return verdict, f"a rerun agrees ({rerun_.interval_text(again)})"
    return f"{verdict} in this run; a rerun may not agree", rerun_.interval_text(again)


def claims_check(points: Sequence[dict[str, Any]], dtype: str, mode: str) -> list[ClaimCheck]:
    out: list[ClaimCheck] = []
    for metric, claim in (
        ("time", "RMSNorm is 15-20% cheaper than LayerNorm"),
        ("energy", "RMSNorm uses 15-20% less energy than LayerNorm"),
    ):
        for impl, ln, rms in _pairs(points, "layernorm", "rmsnorm", metric, dtype, mode):
            r = ratio_between(ln, rms, metric)  # rms / ln
            saving, s_lo, s_hi = 100 * (1 - r.value), 100 * (1 - r.hi), 100 * (1 - r.lo)
            shape = f"{ln['tokens']}×{ln['hidden']}"
            verdict = _saving_verdict(s_lo, s_hi, 15.0, 20.0)
            if saving >= 0:
                measured = f"RMSNorm saves {saving:.1f}% (95% interval {s_lo:.1f}% to {s_hi:.1f}%) at {shape}"
            else:
                measured = f"RMSNorm costs {r.value:.2f}× LayerNorm (95% interval {r.lo:.2f}-{r.hi:.2f}×) at {shape}"
            verdict, again = _on_rerun(r, ln, rms, verdict) if metric == "time" else (verdict, "N/A: energy")
            out.append(ClaimCheck(claim, impl, measured, verdict, saving, (s_hi - s_lo) / 2, shape, r.method, again))
    for impl, ln, dyt in _pairs(points, "layernorm", "dyt", "time", dtype, mode):
        r = ratio_between(ln, dyt, "time")
        shape = f"{ln['tokens']}×{ln['hidden']}"
        if not r.measurable:
            verdict = "no measurable difference"
        elif r.value < 1:
            verdict = "confirmed here"
        else:
            verdict = "not confirmed: LayerNorm is faster here"
        verdict, again = _on_rerun(r, ln, dyt, verdict)
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
            )
        )
    return out


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
    "rank",
    "suggest_spec",
    "versus",
]
