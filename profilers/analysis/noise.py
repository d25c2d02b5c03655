"""Noise and ratios: the one place that decides whether a difference is measurable.

- A point is *noisy* when its interquartile range exceeds ``NOISY_IQR_RATIO`` of
  its median (IQR/p50 > 0.1): its samples disagree too much to trust p50 alone.
- A point's *band* is half its p20–p80 range relative to p50, in percent; for
  energy, half the spread of per-call energy over repeats.
- Two values differ measurably only when their difference exceeds the combined
  band √(a² + b²); otherwise they are "no measurable difference".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NOISY_IQR_RATIO = 0.1
NOISY_RULE = f"IQR/p50 > {NOISY_IQR_RATIO:g}"


def is_noisy(iqr_us: float, p50_us: float) -> bool:
    return p50_us > 0 and iqr_us / p50_us > NOISY_IQR_RATIO


def band_pct(p: Mapping[str, Any], metric: str = "time") -> float:
    """Half the p20–p80 band of a point in % of p50 (energy: half the repeat spread); inf when unknown."""
    if metric == "energy":
        spread = p.get("energy_spread_pct")
        return spread / 2.0 if spread is not None else math.inf
    p50, p20, p80 = p.get("p50_us"), p.get("p20_us"), p.get("p80_us")
    if not p50 or p20 is None or p80 is None:
        return math.inf
    return 100.0 * (p80 - p20) / (2.0 * p50)


@dataclass(frozen=True)
class Difference:
    """How much more ``other`` costs than ``ref``, in % of ref, and the combined noise band."""

    diff_pct: float
    band_pct: float

    @property
    def measurable(self) -> bool:
        return abs(self.diff_pct) > self.band_pct

    @property
    def tie(self) -> bool:
        return not self.measurable


def difference(ref_value: float, ref_band_pct: float, other_value: float, other_band_pct: float) -> Difference:
    return Difference(100.0 * (other_value / ref_value - 1.0), math.hypot(ref_band_pct, other_band_pct))
