"""Noise and ratios: the one place that decides whether a difference is measurable.

A comparison is a ratio with a 95% interval; a difference is "no measurable
difference" exactly when the interval contains 1 (``Ratio.measurable``).
Candidates timed in the same interleaved rounds are compared by the median of
their per-round ratios with a bootstrap CI over rounds (``paired_ratio``).

- A point is *noisy* when its interquartile range exceeds ``NOISY_IQR_RATIO`` of
  its median (IQR/p50 > 0.1): its samples disagree too much to trust p50 alone.
- A point's *band* is half its p20–p80 range relative to p50, in percent; for
  energy, half the spread of per-call energy over repeats.
- Two values differ measurably only when their difference exceeds the combined
  band √(a² + b²); otherwise they are "no measurable difference".
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
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


# -- paired ratios over interleaved rounds -------------------------------------------------------
CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if not n:
        raise ValueError("median of nothing")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _percentile(sorted_vals: Sequence[float], q: float) -> float:
    pos = (len(sorted_vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def seed_for(*parts: Any) -> int:
    """A stable seed from identifiers (not Python's salted hash): bootstrap CIs reproduce across processes."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def bootstrap_median_ci(
    values: Sequence[float], seed: int, resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL
) -> tuple[float, float, float]:
    """(median, lo, hi): the percentile bootstrap CI of the median, resampling ``values`` with replacement."""
    vals = list(values)
    n = len(vals)
    if n == 0:
        raise ValueError("no values to bootstrap")
    rng = random.Random(seed)
    meds = sorted(median([vals[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    alpha = (1 - level) / 2
    return median(vals), _percentile(meds, alpha), _percentile(meds, 1 - alpha)


def _resampler(values: Sequence[float], groups: Sequence[Any] | None, rng: random.Random) -> Callable[[], float]:
    """One bootstrap median of ``values``: over groups, then values within them, when groups are given."""
    vals = list(values)
    if not groups or len(set(groups)) < 2:
        return lambda: median([vals[rng.randrange(len(vals))] for _ in vals])
    by: dict[Any, list[float]] = {}
    for v, g in zip(vals, groups):
        by.setdefault(g, []).append(v)
    members = list(by.values())

    def draw() -> float:
        pooled: list[float] = []
        for _ in members:
            g = members[rng.randrange(len(members))]
            pooled.extend(g[rng.randrange(len(g))] for _ in g)
        return median(pooled)

    return draw


def hierarchical_median_ci(
    values: Sequence[float],
    groups: Sequence[Any],
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = CI_LEVEL,
) -> tuple[float, float, float]:
    """(median, lo, hi) of values that come in groups (the rounds of several processes): each resample draws
    the groups with replacement, then values within each drawn group, so the interval carries the spread
    between groups as well as within them. With one group it is ``bootstrap_median_ci``."""
    vals = list(values)
    if len(vals) != len(groups) or not vals:
        raise ValueError("every value needs its group, and there must be values")
    draw = _resampler(vals, groups, random.Random(seed))
    meds = sorted(draw() for _ in range(resamples))
    alpha = (1 - level) / 2
    return median(vals), _percentile(meds, alpha), _percentile(meds, 1 - alpha)


@dataclass(frozen=True)
class Ratio:
    """``other / ref`` with a 95% interval, and how the interval was obtained.

    methods: ``paired rounds`` (per-round ratios of candidates timed in the same interleaved rounds, bootstrap
    over rounds), ``unpaired rounds`` (separate runs: each side's round medians bootstrapped independently),
    ``p20-p80 band`` (points without rounds: ratio × (1 ± the combined band), the older rule).
    """

    value: float
    lo: float
    hi: float
    method: str

    @property
    def measurable(self) -> bool:
        """A difference is measurable exactly when the interval does not contain 1."""
        return not (self.lo <= 1.0 <= self.hi)

    @property
    def diff_pct(self) -> float:
        return 100.0 * (self.value - 1.0)

    @property
    def half_width_pct(self) -> float:
        """Half the interval in % of the ratio itself (what the adaptive stopping targets)."""
        return 100.0 * (self.hi - self.lo) / (2.0 * self.value) if self.value else math.inf

    @property
    def half_width_points(self) -> float:
        """Half the interval in percentage points of change (the unit of ``diff_pct``)."""
        return 100.0 * (self.hi - self.lo) / 2.0


def paired_ratio(
    other_rounds: Sequence[float], ref_rounds: Sequence[float], seed: int, processes: Sequence[Any] | None = None
) -> Ratio:
    """Median of the per-round ratios other/ref, with a bootstrap CI over rounds; over processes, then rounds
    within them, when ``processes`` names the process of each round (a run spread over several)."""
    if len(other_rounds) != len(ref_rounds) or not other_rounds:
        raise ValueError("paired rounds must be the same, non-zero number of rounds")
    ratios = [o / r for o, r in zip(other_rounds, ref_rounds)]
    if processes is not None and len(set(processes)) > 1:
        value, lo, hi = hierarchical_median_ci(ratios, processes, seed)
        return Ratio(value, lo, hi, f"paired rounds in {len(set(processes))} processes")
    value, lo, hi = bootstrap_median_ci(ratios, seed)
    return Ratio(value, lo, hi, "paired rounds")


def unpaired_ratio(
    other_rounds: Sequence[float],
    ref_rounds: Sequence[float],
    seed: int,
    other_processes: Sequence[Any] | None = None,
    ref_processes: Sequence[Any] | None = None,
) -> Ratio:
    """Ratio of medians of two separately measured sets of round medians; each side resampled on its own
    (over its processes, then rounds, when it ran in several)."""
    rng = random.Random(seed)
    o, r = list(other_rounds), list(ref_rounds)
    draw_o, draw_r = _resampler(o, other_processes, rng), _resampler(r, ref_processes, rng)
    boots = sorted(draw_o() / draw_r() for _ in range(BOOTSTRAP_RESAMPLES))
    alpha = (1 - CI_LEVEL) / 2
    return Ratio(median(o) / median(r), _percentile(boots, alpha), _percentile(boots, 1 - alpha), "unpaired rounds")


def band_ratio(ref_value: float, ref_band: float, other_value: float, other_band: float) -> Ratio:
    d = difference(ref_value, ref_band, other_value, other_band)
    value = other_value / ref_value
    return Ratio(value, value - d.band_pct / 100.0, value + d.band_pct / 100.0, "p20-p80 band")


def rounds_of(p: Mapping[str, Any]) -> list[float] | None:
    """A point's per-round medians (µs), when it was timed in interleaved rounds."""
    r = (p.get("extra") or {}).get("rounds_us")
    return [float(v) for v in r] if r else None


def processes_of(p: Mapping[str, Any]) -> list[int] | None:
    """Which process each of a point's rounds ran in (runs spread over several processes), else None."""
    r = (p.get("extra") or {}).get("rounds_process")
    return [int(v) for v in r] if r else None


def same_group(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Timed in the same interleaved rounds: same run, device, shape, dtype, mode and block."""
    keys = ("run_id", "device", "tokens", "hidden", "dtype", "mode", "block", "cache_state")
    return all(a.get(k) == b.get(k) for k in keys)


def ratio_between(ref: Mapping[str, Any], other: Mapping[str, Any], metric: str = "time") -> Ratio:
    """How ``other`` compares with ``ref``: paired when they shared rounds, else the best honest interval."""
    if metric == "time":
        ra, rb = rounds_of(ref), rounds_of(other)
        seed = seed_for(ref.get("run_id"), ref.get("variant"), ref.get("impl"), other.get("variant"), other.get("impl"))
        if ra and rb and same_group(ref, other) and len(ra) == len(rb):
            procs = processes_of(other)
            return paired_ratio(rb, ra, seed, procs if procs and procs == processes_of(ref) else None)
        if ra and rb and len(ra) >= 3 and len(rb) >= 3:
            pa, pb = processes_of(ref), processes_of(other)
            return unpaired_ratio(
                rb, ra, seed, pb if pb and len(pb) == len(rb) else None, pa if pa and len(pa) == len(ra) else None
            )
        return band_ratio(ref["p50_us"], band_pct(ref), other["p50_us"], band_pct(other))
    ref_e, other_e = ref["energy_mj_per_call"], other["energy_mj_per_call"]
    return band_ratio(ref_e, band_pct(ref, "energy"), other_e, band_pct(other, "energy"))
