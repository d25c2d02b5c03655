"""What a norm implementation saves inside a real model, and the fine-tuning claim checked against it (no torch).

From a model run's points: for each dtype and mode, every candidate against the model's own norm module, the
time ratio with its paired 95% interval (the candidates shared the model and the rounds), the norm's share of
the candidate's time, tokens per second and peak memory; the best choice per mode; and the claim users bring,
"choosing the correct normalization variant reduces fine-tuning compute costs by 20-30%", checked on the
fine-tuning step (the step mode) with the best measured choice's interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...analysis import equivalence as eq
from ...analysis.noise import Ratio, ratio_between
from ...catalog import STEP_MARGIN_PCT, TIMED_STATUSES, label
from ..blocks.analysis import norm_share_pct, share_note

CLAIM = "Choosing the right normalization cuts fine-tuning compute 20-30%"
CLAIM_RANGE = (20.0, 30.0)
COLUMNS = [  # the table's keys and titles, on the page and in the report
    ("mode", "mode"),
    ("dtype", "dtype"),
    ("candidate", "norm implementation"),
    ("status", "status"),
    ("p50_ms", "p50 (ms)"),
    ("saving_pct", "saved vs baseline (%)"),
    ("saving_lo_pct", "95% lo"),
    ("saving_hi_pct", "95% hi"),
    ("verdict", "at the margin"),
    ("norm_share_pct", "norm share (%)"),
    ("tokens_per_s", "tokens/s"),
    ("peak_mib", "peak (MiB)"),
    ("note", "note"),
]
WHAT = {"fwd": "forward (inference)", "fwdbwd": "forward+backward", "step": "fine-tuning step (AdamW)"}


def candidate_name(p: dict[str, Any]) -> str:
    """'RMSNorm own' reads as the model's module; the others by their implementation."""
    if p["impl"] == "own":
        return f"the model's own {label(p['variant'])}"
    return label(p["variant"], p["impl"])


@dataclass(frozen=True)
class Saving:
    """One candidate against the model's own norm in one dtype and mode."""

    point: dict[str, Any]
    base: dict[str, Any]
    ratio: Ratio

    @property
    def saving_pct(self) -> float:
        return 100.0 * (1.0 - self.ratio.value)

    @property
    def lo_pct(self) -> float:
        return 100.0 * (1.0 - self.ratio.hi)

    @property
    def hi_pct(self) -> float:
        return 100.0 * (1.0 - self.ratio.lo)

    def verdict(self, margin_pct: float = STEP_MARGIN_PCT) -> eq.Verdict:
        """The candidate against the model's own module, decided at ±``margin_pct`` of the call's time."""
        n = len((self.point.get("extra") or {}).get("rounds_us") or ()) or None
        return eq.from_ratio(self.ratio, margin_pct, n)

    def sentence(self, margin_pct: float = STEP_MARGIN_PCT) -> str:
        p = self.point
        v = self.verdict(margin_pct)
        where = f"{WHAT.get(p['mode'], p['mode'])}, {p['dtype']}, {p['tokens']:,} tokens"
        what = WHAT.get(p["mode"], p["mode"])
        change = (
            f"saves {self.saving_pct:.1f}% of the {what} time"
            if self.saving_pct >= 0
            else f"takes {-self.saving_pct:.1f}% more {what} time"
        )
        interval = f"95% interval {self.lo_pct:+.1f}% to {self.hi_pct:+.1f}% saved"
        decided = v.phrase(of=what)
        text = f"{candidate_name(self.base)} → {label(p['variant'], p['impl'])} {change} ({interval}: {decided})"
        share = norm_share_pct(self.base)
        if share is not None:
            text += f"; the norm is {share:.1f}% of the model's time with its own module"
        return f"{text} ({where})."


def _timed(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p["status"] in TIMED_STATUSES and p.get("p50_us")]


def savings(points: Sequence[dict[str, Any]]) -> list[Saving]:
    """Every timed candidate against the group's baseline (the model's own module unless the sweep said)."""
    timed = _timed(points)
    out = []
    for p in timed:
        base_key = p.get("ratio_baseline")
        base = next(
            (
                q
                for q in timed
                if f"{q['variant']} {q['impl']}" == base_key
                and (q["dtype"], q["mode"], q["tokens"]) == (p["dtype"], p["mode"], p["tokens"])
            ),
            None,
        )
        if base is None or base is p:
            continue
        out.append(Saving(p, base, ratio_between(base, p)))
    return sorted(out, key=lambda s: (s.point["dtype"], s.point["mode"], -s.saving_pct))


@dataclass(frozen=True)
class Claim:
    claim: str
    config: str
    measured: str
    verdict: str


def claim_check(points: Sequence[dict[str, Any]], margin_pct: float = STEP_MARGIN_PCT) -> list[Claim]:
    """The 20-30% claim on each dtype's fine-tuning step: the best measured choice's saving and interval,
    decided at ±``margin_pct`` of the step."""
    out = []
    by: dict[str, list[Saving]] = {}
    for s in savings(points):
        if s.point["mode"] == "step":
            by.setdefault(s.point["dtype"], []).append(s)
    for dtype, items in sorted(by.items()):
        best = max(items, key=lambda s: s.saving_pct)
        config = f"{best.point.get('block') or 'model'}, {dtype}, fine-tuning step, {best.point['tokens']:,} tokens"
        verb = "saves" if best.saving_pct >= 0 else "costs"
        measured = (
            f"the best choice here, {label(best.point['variant'], best.point['impl'])}, {verb} "
            f"{abs(best.saving_pct):.1f}% of the step (95% interval {best.lo_pct:.1f}% to {best.hi_pct:.1f}% saved)"
        )
        share = norm_share_pct(best.base)
        if share is not None:
            measured += f"; the norm is {share:.1f}% of the step, the most any norm choice can save"
        out.append(
            Claim(
                CLAIM,
                config,
                measured,
                eq.claimed_saving(best.verdict(margin_pct), *CLAIM_RANGE, "the model's own module is cheaper here"),
            )
        )
    return out


def answers(points: Sequence[dict[str, Any]], margin_pct: float = STEP_MARGIN_PCT) -> list[str]:
    """The sentences a model run answers with, decided at ±``margin_pct``; an explanation when it cannot."""
    out = [s.sentence(margin_pct) for s in savings(points)]
    if not out:
        return ["No candidate was timed beside the model's own norm module: nothing to compare."]
    for c in claim_check(points, margin_pct):
        out.append(f"Claim “{c.claim}”: {c.measured}: {c.verdict} ({c.config}).")
    return out


def table(points: Sequence[dict[str, Any]], margin_pct: float = STEP_MARGIN_PCT) -> list[dict[str, Any]]:
    """One row per point, for the page and the report: time, saving (decided at ±``margin_pct``), the norm's
    share, tokens/s, memory."""
    by_point = {id(s.point): s for s in savings(points)}
    rows = []
    for p in points:
        s = by_point.get(id(p))
        extra = p.get("extra") or {}
        rows.append(
            {
                "mode": p["mode"],
                "dtype": p["dtype"],
                "candidate": "own" if p["impl"] == "own" else label(p["variant"], p["impl"]),
                "status": p["status"],
                "p50_ms": p["p50_us"] / 1000 if p.get("p50_us") else None,
                "saving_pct": s.saving_pct if s else None,
                "saving_lo_pct": s.lo_pct if s else None,
                "saving_hi_pct": s.hi_pct if s else None,
                "verdict": s.verdict(margin_pct).label if s else None,
                "norm_share_pct": norm_share_pct(p) if p["status"] in TIMED_STATUSES else None,
                "tokens_per_s": extra.get("tokens_per_s"),
                "peak_mib": p["peak_bytes"] / 2**20 if p.get("peak_bytes") else None,
                "note": p.get("error") or (share_note(p) if p["status"] in TIMED_STATUSES else None),
            }
        )
    return rows
