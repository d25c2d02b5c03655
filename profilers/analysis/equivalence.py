"""Practical equivalence: what a ratio's interval lets a user decide, against a margin that matters to them.

"Beyond the noise" is a statistical statement: a 0.9% saving can be real and still not worth a change. A
verdict is therefore taken against a margin of practical equivalence ±m (``catalog.KERNEL_MARGIN_PCT`` for a
kernel, ``catalog.STEP_MARGIN_PCT`` for a whole step; the user may set another), as equivalence testing does
(TOST, two one-sided tests: "equivalent within ±m" when the whole 95% interval lies inside ±m). Every
comparison of ``other`` against ``ref`` (a time ratio other / ref) gets one of four verdicts:

- *faster by more than the margin*: the whole interval below 1 − m;
- *slower by more than the margin*: the whole interval above 1 + m;
- *equivalent within ±m*: the whole interval inside [1 − m, 1 + m];
- *undecided*: the interval crosses 1 − m or 1 + m. Its sentence says how many rounds (or processes) would
  decide it: an interval's half-width shrinks as 1/√n, so n × (half-width / distance to the nearer
  margin)² measurements put the interval on one side of it, if the spread stays as measured.

Pure arithmetic over a ratio and its interval: no torch, no store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..catalog import SIMPLICITY

FASTER = "faster"
SLOWER = "slower"
EQUIVALENT = "equivalent"
UNDECIDED = "undecided"
VERDICTS = (FASTER, SLOWER, EQUIVALENT, UNDECIDED)
MARGIN_MAX_PCT = 50.0  # a margin past ±50% would call a 1.5× slowdown equivalent: refused


def check_margin(margin_pct: float) -> float:
    """The margin, or ValueError naming the allowed range (the CLI and pages turn it into their refusal)."""
    if not (isinstance(margin_pct, int | float) and math.isfinite(margin_pct) and 0 < margin_pct <= MARGIN_MAX_PCT):
        raise ValueError(f"the margin must be in (0, {MARGIN_MAX_PCT:g}] %, got {margin_pct}")
    return float(margin_pct)


@dataclass(frozen=True)
class Verdict:
    """One comparison decided against a margin: ``other / ref`` with its interval, and what it lets a user do."""

    kind: str  # faster | slower | equivalent | undecided
    margin_pct: float
    value: float  # other / ref
    lo: float
    hi: float
    basis: str = "this run's 95% interval"
    n: int | None = None  # the rounds (or processes) the interval rests on
    unit: str = "rounds"
    needed: int | None = None  # undecided: how many in all would decide it (None: the estimate sits on a margin)

    @property
    def label(self) -> str:
        """The verdict in a few words, as a table cell says it."""
        m = f"±{self.margin_pct:g}%"
        return {
            FASTER: f"faster by more than {m}",
            SLOWER: f"slower by more than {m}",
            EQUIVALENT: f"equivalent within {m}",
            UNDECIDED: f"undecided at {m}",
        }[self.kind]

    def phrase(self, of: str = "") -> str:
        """The verdict as a sentence's clause: the label, ``of`` what the margin is a share, and what would
        decide an undecided one."""
        if self.kind == EQUIVALENT and of:
            return f"{self.label} of the {of}"
        if self.kind == UNDECIDED:
            return f"{self.label}: {self.decides}"
        return self.label

    @property
    def change_text(self) -> str:
        """The measured change with its interval, in % of the reference (negative: less time)."""
        return (
            f"{100 * (self.value - 1):+.1f}% (95% interval {100 * (self.lo - 1):+.1f}% to {100 * (self.hi - 1):+.1f}%)"
        )

    @property
    def decides(self) -> str:
        """What would decide an undecided comparison, in one clause; empty for a decided one."""
        if self.kind != UNDECIDED:
            return ""
        if self.needed is None:
            return f"its estimate sits on the ±{self.margin_pct:g}% margin: more {self.unit} would not decide it"
        if self.n:
            more = self.needed - self.n
            return f"about {more} more {self.unit} ({self.needed} in all, from the measured spread) would decide it"
        factor = self.needed  # the interval rests on no counted rounds: say how much narrower it must be
        return f"an interval about {math.sqrt(factor):.1f}× narrower would decide it (a sweep with rounds)"

    def sentence(self, name: str, ref: str) -> str:
        """The sentence a user acts on: ``name`` against ``ref``, the verdict first, then the evidence."""
        m = f"±{self.margin_pct:g}%"
        change = self.change_text
        if self.kind == EQUIVALENT:
            return f"{name} and {ref}: equivalent within {m} ({name} {change})"
        if self.kind == FASTER:
            return f"{name} is faster than {ref} by more than {m}: {change}"
        if self.kind == SLOWER:
            return f"{name} is slower than {ref} by more than {m}: {change}"
        return f"{name} vs {ref}: undecided at {m} ({change} crosses the margin); {self.decides}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.kind,
            "margin_pct": self.margin_pct,
            "ratio": self.value,
            "lo": self.lo,
            "hi": self.hi,
            "basis": self.basis,
            "n": self.n,
            "unit": self.unit,
            "needed": self.needed,
            "label": self.label,
        }


def judge(
    value: float,
    lo: float,
    hi: float,
    margin_pct: float,
    n: int | None = None,
    unit: str = "rounds",
    basis: str = "this run's 95% interval",
) -> Verdict:
    """The verdict on a ratio ``value`` with 95% interval [lo, hi] at margin ±``margin_pct``; ``n`` is what the
    interval rests on (rounds, processes), for an undecided one's "how many would decide it"."""
    m = check_margin(margin_pct) / 100.0
    low, high = 1.0 - m, 1.0 + m
    if hi < low:
        kind = FASTER
    elif lo > high:
        kind = SLOWER
    elif low <= lo and hi <= high:
        kind = EQUIVALENT
    else:
        kind = UNDECIDED
    needed = _needed(value, lo, hi, low, high, n) if kind == UNDECIDED else None
    return Verdict(kind, margin_pct, value, lo, hi, basis, n, unit, needed)


def _needed(value: float, lo: float, hi: float, low: float, high: float, n: int | None) -> int | None:
    """How many rounds in all would put the interval on one side of the nearer margin (log scale, 1/√n)."""
    if not (value > 0 and lo > 0 and hi > 0):
        return None
    e = math.log(value)
    half = max(e - math.log(lo), math.log(hi) - e)
    distance = min(abs(e - math.log(low)), abs(e - math.log(high)))
    if distance < 1e-9 or half <= 0:
        return None
    base = n or 1
    return max(base + 1, math.ceil(base * (half / distance) ** 2 - 1e-9))


def from_ratio(r: Any, margin_pct: float, n: int | None = None, unit: str = "rounds") -> Verdict:
    """``judge`` over a ``noise.Ratio`` (other / ref), its own interval."""
    basis = "this run's 95% interval" if str(r.method).startswith("paired") else f"95% interval ({r.method})"
    return judge(r.value, r.lo, r.hi, margin_pct, n, unit, basis)


def claimed_saving(v: Verdict, low_pct: float, high_pct: float, cheaper: str) -> str:
    """A claimed saving of ``low_pct``-``high_pct``% checked against ``v`` (the claimed cheaper one over the
    other): not supported when they are equivalent within the margin, else the claim's size against the
    interval; ``cheaper`` says what won when the claim's direction is wrong."""
    if v.kind == EQUIVALENT:
        return f"not supported: {v.label} here"
    if v.kind == UNDECIDED:
        return v.phrase()
    if v.kind == SLOWER:
        return f"opposite: {cheaper} by more than ±{v.margin_pct:g}%"
    s_lo, s_hi = 100 * (1 - v.hi), 100 * (1 - v.lo)
    if s_hi < low_pct:
        return "smaller than claimed"
    if s_lo > high_pct:
        return "larger than claimed"
    return "consistent with the claim"


SIMPLER_BECAUSE = {
    "own": "the model's own module: nothing to change",
    "native": "torch's own operator: nothing to compile or install",
    "eager": "plain torch ops: nothing to compile or install",
    "compiled": "torch.compile: nothing to install, but a compile per shape",
    "liger": "a third-party kernel package to install and keep in step with torch",
    "quack": "a third-party kernel package to install and keep in step with torch",
}


def simplicity(impl: str) -> int:
    """An implementation's place in ``catalog.SIMPLICITY`` (unknown ones last)."""
    return SIMPLICITY.index(impl) if impl in SIMPLICITY else len(SIMPLICITY)
