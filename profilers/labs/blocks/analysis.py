"""What the norm choice costs inside a block and a training step (no torch).

From a block run's points: the norm's measured share of the block (from the
profiled component breakdown), the LayerNorm → RMSNorm ratio of the whole block
and of a training step with its 95% interval (paired: both timed in the same
interleaved rounds), each placement against Pre-LN, and the claims check at
block and step level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...analysis import equivalence as eq
from ...analysis.noise import Ratio, ratio_between
from ...catalog import PLACEMENTS, STEP_MARGIN_PCT, TIMED_STATUSES, label

STEP = "step"


def _timed(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p["status"] in TIMED_STATUSES and p.get("p50_us") and p.get("placement")]


def _find(points, norm, placement, impl, dtype, mode, tokens) -> dict[str, Any] | None:
    for p in points:
        if (p["variant"], p["placement"], p["impl"], p["dtype"], p["mode"], p["tokens"]) == (
            norm,
            placement,
            impl,
            dtype,
            mode,
            tokens,
        ):
            return p
    return None


def _shares(p: dict[str, Any]) -> dict[str, float] | None:
    """A point's component shares, or None where they cannot be trusted: a run with backward profiled before
    backward work was charged to its components (no ``backward_us_per_call``) counted a norm's forward only."""
    comps = (p.get("extra") or {}).get("components") or {}
    if p.get("mode") != "fwd" and "backward_us_per_call" not in comps:
        return None
    return comps.get("share_pct") or None


def norm_share_pct(p: dict[str, Any]) -> float | None:
    return (_shares(p) or {}).get("norm")


def share_note(p: dict[str, Any]) -> str | None:
    """Why a point has no norm share (None when it has one)."""
    if norm_share_pct(p) is not None:
        return None
    comps = (p.get("extra") or {}).get("components") or {}
    if comps.get("share_pct"):
        return "its backward was profiled before backward work was charged to components"
    return comps.get("note") or "no profiled breakdown"


@dataclass(frozen=True)
class Switch:
    """LayerNorm → RMSNorm in one configuration: the time ratio with its interval and each one's norm share."""

    placement: str
    impl: str
    dtype: str
    mode: str
    tokens: int
    ratio: Ratio
    ln_share_pct: float | None
    rms_share_pct: float | None
    share_note: str | None = None  # why the norm's share is not given, when it is not

    @property
    def change_pct(self) -> float:
        return 100.0 * (self.ratio.value - 1.0)


def switches(points: Sequence[dict[str, Any]]) -> list[Switch]:
    timed = _timed(points)
    out = []
    keys = sorted({(p["placement"], p["impl"], p["dtype"], p["mode"], p["tokens"]) for p in timed})
    for placement, impl, dtype, mode, tokens in keys:
        ln = _find(timed, "layernorm", placement, impl, dtype, mode, tokens)
        rms = _find(timed, "rmsnorm", placement, impl, dtype, mode, tokens)
        if ln and rms:
            r = ratio_between(ln, rms)
            out.append(
                Switch(placement, impl, dtype, mode, tokens, r, norm_share_pct(ln), norm_share_pct(rms), share_note(ln))
            )
    return out


def _what(mode: str) -> str:
    return {"fwd": "forward time", "fwdbwd": "forward+backward time", STEP: "training-step time"}.get(mode, mode)


def switch_sentence(s: Switch, margin_pct: float = STEP_MARGIN_PCT) -> str:
    r = s.ratio
    v = eq.from_ratio(r, margin_pct)
    lo, hi = 100 * (r.lo - 1), 100 * (r.hi - 1)
    where = f"{PLACEMENTS[s.placement].display}, {s.impl}, {s.dtype}, {s.tokens:,} tokens"
    if s.mode == STEP:
        text = f"Switching LayerNorm → RMSNorm changes a training step's time by {s.change_pct:+.1f}%"
    else:
        text = f"Switching LayerNorm → RMSNorm changes this block's {_what(s.mode)} by {s.change_pct:+.1f}%"
    text += f" (95% interval {lo:+.1f}% to {hi:+.1f}%: {v.phrase()})"
    if s.ln_share_pct is not None:
        text += f"; the norm is {s.ln_share_pct:.1f}% of the {'step' if s.mode == STEP else 'block'} with LayerNorm"
        if s.rms_share_pct is not None:
            text += f", {s.rms_share_pct:.1f}% with RMSNorm"
    elif s.share_note:
        text += f"; the norm's share: N/A ({s.share_note})"
    return f"{text} ({where})."


def answers(points: Sequence[dict[str, Any]], margin_pct: float = STEP_MARGIN_PCT) -> list[str]:
    """The sentences a block run answers with, each decided at ±``margin_pct``; an explanation when it cannot."""
    out = [switch_sentence(s, margin_pct) for s in switches(points)]
    return out or ["No configuration was timed with both LayerNorm and RMSNorm: add both norms to the block sweep."]


@dataclass(frozen=True)
class PlacementCost:
    placement: str
    norm: str
    impl: str
    dtype: str
    mode: str
    tokens: int
    p50_us: float
    ratio: Ratio | None  # against Pre-LN with the same norm and implementation


def placement_costs(points: Sequence[dict[str, Any]]) -> list[PlacementCost]:
    timed = [p for p in _timed(points) if p["mode"] != STEP]
    out = []
    for p in sorted(timed, key=lambda q: (q["dtype"], q["mode"], q["tokens"], q["variant"], q["impl"], q["placement"])):
        base = _find(timed, p["variant"], "pre_ln", p["impl"], p["dtype"], p["mode"], p["tokens"])
        r = ratio_between(base, p) if base is not None and base is not p else None
        out.append(
            PlacementCost(p["placement"], p["variant"], p["impl"], p["dtype"], p["mode"], p["tokens"], p["p50_us"], r)
        )
    return out


def component_rows(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per timed block point with its time per component (µs per call, scaled to the un-profiled p50)."""
    rows = []
    for p in _timed(points):
        comps = (p.get("extra") or {}).get("components") or {}
        shares = _shares(p)
        if not shares:
            continue
        rows.append(
            {
                "config": f"{PLACEMENTS[p['placement']].display} · {label(p['variant'], p['impl'])}",
                "dtype": p["dtype"],
                "mode": p["mode"],
                "tokens": p["tokens"],
                "p50_us": p["p50_us"],
                **{f"{k}_us": p["p50_us"] * v / 100.0 for k, v in shares.items()},
                "profiler_overhead_pct": comps.get("profiler_overhead_pct"),
            }
        )
    return rows


@dataclass(frozen=True)
class BlockClaim:
    claim: str
    level: str  # block | training step
    config: str
    measured: str
    verdict: str


def claims(points: Sequence[dict[str, Any]], margin_pct: float = STEP_MARGIN_PCT) -> list[BlockClaim]:
    """The claims users bring, checked at block and training-step level with the 95% intervals, at ±margin."""
    out = []
    for s in switches(points):
        v = eq.from_ratio(s.ratio, margin_pct)
        saving, s_lo, s_hi = -s.change_pct, 100 * (1 - s.ratio.hi), 100 * (1 - s.ratio.lo)
        config = f"{PLACEMENTS[s.placement].display}, {s.impl}, {s.dtype}, {s.mode}, {s.tokens:,} tokens"
        if saving >= 0:
            measured = f"RMSNorm saves {saving:.1f}% (95% interval {s_lo:.1f}% to {s_hi:.1f}%)"
        else:
            r = s.ratio
            measured = f"RMSNorm takes {r.value:.3f}× LayerNorm's time (95% interval {r.lo:.3f}-{r.hi:.3f}×)"
        if s.mode == STEP:
            out.append(
                BlockClaim(
                    "The right normalization cuts fine-tuning compute 20-30%",
                    "training step",
                    config,
                    measured + " of a training step",
                    eq.claimed_saving(v, 20.0, 30.0, "LayerNorm is cheaper here"),
                )
            )
        else:
            share = f"; the norm is {s.ln_share_pct:.1f}% of the block" if s.ln_share_pct is not None else ""
            out.append(
                BlockClaim(
                    "RMSNorm cuts normalization compute 15-20%",
                    "block",
                    config,
                    measured + " of the whole block" + share,
                    eq.claimed_saving(v, 15.0, 20.0, "LayerNorm is cheaper here"),
                )
            )
    return out
