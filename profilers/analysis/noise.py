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

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from .stats import t_quantile

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


def seed_for(*parts: Any) -> int:
    """A stable seed from identifiers (not Python's salted hash): bootstrap CIs reproduce across processes."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def _medians(values: Sequence[float], groups: Sequence[Any] | None, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` bootstrap medians of ``values``: each resamples the values with replacement, or, when ``groups``
    names at least two groups, draws the groups with replacement and then values within each drawn group."""
    vals = np.asarray(values, dtype=float)
    if groups is None or len(set(groups)) < 2:
        return np.median(vals[rng.integers(0, len(vals), size=(n, len(vals)))], axis=1)
    by: dict[Any, list[float]] = {}
    for v, g in zip(values, groups):
        by.setdefault(g, []).append(float(v))
    members = [np.asarray(m) for m in by.values()]
    width = max(len(m) for m in members)
    # resample b pools, per slot j, the values of group pick[b, j] drawn afresh; shorter groups pad with NaN
    pick = rng.integers(0, len(members), size=(n, len(members)))
    pooled = np.full((n, len(members), width), np.nan)
    for g, m in enumerate(members):
        rows, slots = np.nonzero(pick == g)
        pooled[rows, slots, : len(m)] = m[rng.integers(0, len(m), size=(len(rows), len(m)))]
    return np.nanmedian(pooled.reshape(n, -1), axis=1)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(int(seed) % (1 << 64))  # any integer seed, negative ones too


@functools.lru_cache(maxsize=256)
def expanded_alpha(n: int, level: float = CI_LEVEL) -> float:
    """The tail share a percentile bootstrap of ``n`` values should cut to reach ``level`` coverage.

    The plain percentile interval is too narrow for few values: simulated, the 95% interval of a median of 7
    paired ratios held the true ratio 86-88% of the time (14: 94%; 30: 93%). Hesterberg's expanded percentile
    interval ("What teachers should know about the bootstrap", 2015) cuts Φ(−√(n/(n−1))·t(n−1)) from each tail
    instead of (1 − level)/2: 0.41% at 7 values, 1.25% at 14, 1.9% at 30; simulated, it then held the true
    ratio 98%, 97% and 95% of the time (``benchmarks/interval_coverage.py``).
    """
    alpha = (1 - level) / 2
    if n < 2:
        return alpha
    return min(alpha, NormalDist().cdf(-math.sqrt(n / (n - 1)) * t_quantile(1 - alpha, n - 1)))


def _interval(meds: np.ndarray, n: int, level: float) -> tuple[float, float]:
    """The expanded percentile interval of bootstrap medians of ``n`` values."""
    alpha = expanded_alpha(n, level)
    lo, hi = np.percentile(meds, [100 * alpha, 100 * (1 - alpha)])  # linear interpolation between order stats
    return float(lo), float(hi)


def bootstrap_median_ci(
    values: Sequence[float], seed: int, resamples: int = BOOTSTRAP_RESAMPLES, level: float = CI_LEVEL
) -> tuple[float, float, float]:
    """(median, lo, hi): the expanded percentile bootstrap CI of the median (``expanded_alpha``), resampling
    ``values`` with replacement."""
    vals = list(values)
    if not vals:
        raise ValueError("no values to bootstrap")
    return (median(vals), *_interval(_medians(vals, None, _rng(seed), resamples), len(vals), level))


def hierarchical_median_ci(
    values: Sequence[float],
    groups: Sequence[Any],
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = CI_LEVEL,
) -> tuple[float, float, float]:
    """(median, lo, hi) of values that come in groups (the rounds of several processes): each resample draws
    the groups with replacement, then values within each drawn group, so the interval carries the spread
    between groups as well as within them. With one group it is ``bootstrap_median_ci``. The expansion for few
    values counts the rounds, not the groups: with two or three processes, the part of the interval that comes
    from the spread between processes rests on that few draws of it."""
    vals = list(values)
    if len(vals) != len(groups) or not vals:
        raise ValueError("every value needs its group, and there must be values")
    return (median(vals), *_interval(_medians(vals, groups, _rng(seed), resamples), len(vals), level))


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
    def rerun_range(self) -> tuple[float, float]:
        """Where a rerun's ratio is expected (95%) when the two runs differ by chance alone: the interval's
        reach on each side, on a log scale, times √2, since the rerun carries its own error as well as this
        run's. What differs between processes is in it only when the interval resampled processes."""
        if not (self.value > 0 and self.lo > 0 and self.hi > 0):
            return self.lo, self.hi
        return self.value * (self.lo / self.value) ** math.sqrt(2), self.value * (self.hi / self.value) ** math.sqrt(2)

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
    rng = _rng(seed)
    o, r = list(other_rounds), list(ref_rounds)
    n = BOOTSTRAP_RESAMPLES
    boots = _medians(o, other_processes, rng, n) / _medians(r, ref_processes, rng, n)
    lo, hi = _interval(boots, min(len(o), len(r)), CI_LEVEL)
    return Ratio(median(o) / median(r), lo, hi, "unpaired rounds")


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


def rounds_index_of(p: Mapping[str, Any]) -> list[int] | None:
    """The round number of each of a point's rounds (within its process), when stored: a candidate leaves a
    group's added rounds once precise enough, and may join them again if its baseline changes."""
    r = (p.get("extra") or {}).get("rounds_index")
    return [int(v) for v in r] if r else None


def _round_keys(n: int, procs: Sequence[int] | None, index: Sequence[int] | None) -> list[tuple[int, int]]:
    """(process, round) of each of ``n`` rounds; without stored round numbers, the order within the process
    (older runs: every candidate took part in every round)."""
    procs = list(procs) if procs is not None and len(procs) == n else [0] * n
    if index is not None and len(index) == n:
        return list(zip(procs, index))
    seen: dict[int, int] = {}
    keys = []
    for k in procs:
        keys.append((k, seen.get(k, 0)))
        seen[k] = seen.get(k, 0) + 1
    return keys


def shared_rounds(
    other: Mapping[str, Any], ref: Mapping[str, Any]
) -> tuple[list[float], list[float], list[int] | None] | None:
    """The rounds two points of one group both took part in, paired by process and round number:
    ``(other's, ref's, process of each or None)``; None when they share none, or when one ran in processes and
    the other not."""
    a, b = rounds_of(other), rounds_of(ref)
    if not a or not b:
        return None
    pa, pb = processes_of(other), processes_of(ref)
    if (pa is None) != (pb is None):
        return None
    ref_by = dict(zip(_round_keys(len(b), pb, rounds_index_of(ref)), b))
    out_a: list[float] = []
    out_b: list[float] = []
    procs: list[int] = []
    for key, v in zip(_round_keys(len(a), pa, rounds_index_of(other)), a):
        if key in ref_by:
            out_a.append(v)
            out_b.append(ref_by[key])
            procs.append(key[0])
    if not out_a:
        return None
    return out_a, out_b, procs if pa is not None else None


def same_group(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Timed in the same interleaved rounds: same run, device, shape, dtype, mode and block."""
    keys = ("run_id", "device", "tokens", "hidden", "dtype", "mode", "block", "cache_state")
    return all(a.get(k) == b.get(k) for k in keys)


def ratio_between(ref: Mapping[str, Any], other: Mapping[str, Any], metric: str = "time") -> Ratio:
    """How ``other`` compares with ``ref``: paired when they shared rounds, else the best honest interval."""
    if metric == "time":
        ra, rb = rounds_of(ref), rounds_of(other)
        seed = seed_for(ref.get("run_id"), ref.get("variant"), ref.get("impl"), other.get("variant"), other.get("impl"))
        shared = shared_rounds(other, ref) if same_group(ref, other) else None
        if shared:
            mine, theirs, procs = shared
            return paired_ratio(mine, theirs, seed, procs)
        if ra and rb and len(ra) >= 3 and len(rb) >= 3:
            pa, pb = processes_of(ref), processes_of(other)
            return unpaired_ratio(
                rb, ra, seed, pb if pb and len(pb) == len(rb) else None, pa if pa and len(pa) == len(ra) else None
            )
        return band_ratio(ref["p50_us"], band_pct(ref), other["p50_us"], band_pct(other))
    ref_e, other_e = ref["energy_mj_per_call"], other["energy_mj_per_call"]
    return band_ratio(ref_e, band_pct(ref, "energy"), other_e, band_pct(other, "energy"))
