"""Rank variant × implementation for a target, and check published claims.

Whether two choices differ measurably is decided in one place, ``noise.py``;
choices within each other's noise are a tie and are said to be one ("no
measurable difference"), never ranked apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import IMPLS, label
from ..spec import SweepSpec, default_spec
from .noise import Difference, band_pct, difference

DEFAULT_VARIANTS = ("layernorm", "rmsnorm", "dyt")


@dataclass(frozen=True)
class Target:
    tokens: int
    hidden: int
    dtype: str = "bfloat16"
    mode: str = "fwd"  # fwd: inference, fwdbwd: training
    metric: str = "time"  # time | energy
    variants: tuple[str, ...] = DEFAULT_VARIANTS

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

    @property
    def name(self) -> str:
        return label(self.variant, self.impl)


def versus(ref: Candidate, other: Candidate) -> Difference:
    """How much more ``other`` costs than ``ref``, and whether that is beyond the noise."""
    return difference(ref.value, ref.noise_pct, other.value, other.noise_pct)


@dataclass
class Ranking:
    target: Target
    candidates: list[Candidate] = field(default_factory=list)
    tiers: list[list[Candidate]] = field(default_factory=list)
    headline: str = ""
    lines: list[str] = field(default_factory=list)
    shape_note: str | None = None
    missing: str | None = None


def _value(p: dict[str, Any], metric: str) -> float | None:
    return p.get("p50_us") if metric == "time" else p.get("energy_mj_per_call")


def candidates(points: Iterable[dict[str, Any]], t: Target) -> tuple[list[Candidate], str | None]:
    """The newest measured point per (variant, impl) at the target shape, or the nearest token count."""
    pool = [
        p
        for p in points
        if p["status"] == "ok"
        and p["dtype"] == t.dtype
        and p["mode"] == t.mode
        and p["variant"] in t.variants
        and p["hidden"] == t.hidden
        and _value(p, t.metric) is not None
    ]
    if not pool:
        return [], None
    exact = [p for p in pool if p["tokens"] == t.tokens]
    note = None
    if not exact:
        nearest = min({p["tokens"] for p in pool}, key=lambda n: abs(math.log(n / t.tokens)))
        exact = [p for p in pool if p["tokens"] == nearest]
        note = f"no point at {t.tokens} tokens; using the nearest measured, {nearest}×{t.hidden}"
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for p in exact:
        key = (p["variant"], p["impl"])
        if key not in best or p["run_id"] > best[key]["run_id"]:
            best[key] = p
    out = [
        Candidate(
            p["variant"],
            p["impl"],
            float(_value(p, t.metric)),
            band_pct(p, t.metric),
            p["run_id"],
            p["tokens"],
            p["hidden"],
            bool(p.get("noisy")),
        )
        for p in best.values()
    ]
    return sorted(out, key=lambda c: c.value), note


def _phrase(ref: Candidate, other: Candidate, metric: str) -> str:
    c = versus(ref, other)
    if c.tie:
        return f"{other.name} and {ref.name}: no measurable difference ({c.diff_pct:+.1f}%, noise ±{c.band_pct:.1f}%)"
    saving = 100.0 * (1.0 - ref.value / other.value)  # share of the slower one's cost that ref avoids
    ratio = other.value / ref.value
    times = f" ({ratio:.2f}×)" if ratio >= 1.5 else ""
    if metric == "time":
        return f"{ref.name} is {saving:.1f}% faster than {other.name} here{times}; noise ±{c.band_pct:.1f}%"
    return f"{ref.name} uses {saving:.1f}% less energy per call than {other.name}{times}; noise ±{c.band_pct:.1f}%"


def rank(points: Sequence[dict[str, Any]], t: Target, device: str = "cuda") -> Ranking:
    cands, note = candidates(points, t)
    r = Ranking(t, cands, shape_note=note)
    if not cands:
        spec = suggest_spec(t, device)
        r.missing = (
            f"no {t.metric} measurements for {', '.join(label(v) for v in t.variants)} at hidden {t.hidden}, "
            f"{t.dtype}, {t.mode}: run `python -m profilers run {cli_args(spec)}`"
        )
        return r
    remaining = list(cands)
    while remaining:
        head = remaining[0]
        tier = [c for c in remaining if versus(head, c).tie]
        r.tiers.append(tier)
        remaining = [c for c in remaining if c not in tier]
    best = cands[0]
    top = r.tiers[0]
    if len(top) == 1:
        r.headline = f"Use {best.name}: it is the cheapest here by more than the noise."
    else:
        r.headline = f"Tie: {', '.join(c.name for c in top)} are within the noise of each other; pick on other grounds."
    r.lines = [_phrase(best, c, t.metric) for c in cands[1:]]
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
    diff_pct: float | None
    band_pct: float | None


def _pairs(points: Sequence[dict[str, Any]], a: str, b: str, metric: str, dtype: str, mode: str):
    """Per implementation, the largest shape where both variants were measured."""
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


def _cand(p: dict[str, Any], metric: str) -> Candidate:
    return Candidate(
        p["variant"],
        p["impl"],
        float(_value(p, metric)),
        band_pct(p, metric),
        p["run_id"],
        p["tokens"],
        p["hidden"],
        bool(p.get("noisy")),
    )


def claims_check(points: Sequence[dict[str, Any]], dtype: str, mode: str) -> list[ClaimCheck]:
    out: list[ClaimCheck] = []
    for metric, claim in (
        ("time", "RMSNorm is 15-20% cheaper than LayerNorm"),
        ("energy", "RMSNorm uses 15-20% less energy than LayerNorm"),
    ):
        for impl, ln, rms in _pairs(points, "layernorm", "rmsnorm", metric, dtype, mode):
            c = versus(_cand(ln, metric), _cand(rms, metric))
            saving = -c.diff_pct
            ln_cost, rms_cost = _value(ln, metric), _value(rms, metric)
            shape = f"{ln['tokens']}×{ln['hidden']}"
            if c.tie:
                verdict = "no measurable difference"
            elif saving <= 0:
                verdict = "opposite: LayerNorm is cheaper here"
            elif saving + c.band_pct < 15:
                verdict = "smaller than claimed"
            elif saving - c.band_pct > 20:
                verdict = "larger than claimed"
            else:
                verdict = "consistent with the claim"
            out.append(
                ClaimCheck(
                    claim,
                    impl,
                    (
                        f"RMSNorm saves {saving:.1f}% (±{c.band_pct:.1f}%) at {shape}"
                        if saving >= 0
                        else f"RMSNorm costs {rms_cost / ln_cost:.2f}× LayerNorm (±{c.band_pct:.1f}%) at {shape}"
                    ),
                    verdict,
                    saving,
                    c.band_pct,
                )
            )
    for impl, ln, dyt in _pairs(points, "layernorm", "dyt", "time", dtype, mode):
        c = versus(_cand(ln, "time"), _cand(dyt, "time"))
        shape = f"{ln['tokens']}×{ln['hidden']}"
        if c.tie:
            verdict = "no measurable difference"
        elif c.diff_pct < 0:
            verdict = "confirmed here"
        else:
            verdict = "not confirmed: LayerNorm is faster here"
        out.append(
            ClaimCheck(
                "DyT is faster than LayerNorm",
                impl,
                f"DyT takes {c.diff_pct:+.1f}% (±{c.band_pct:.1f}%) vs LayerNorm at {shape}",
                verdict,
                c.diff_pct,
                c.band_pct,
            )
        )
    return out
