"""Where a rerun lands: a ratio's interval widened by what differs between runs on this machine.

A run's 95% interval covers that run's moment: its rounds (and its processes, when it ran in several). A rerun
tomorrow meets the machine in another state, so its ratio moves by more than the run's interval says (issue 9:
whole groups moved 3-15% between runs a minute apart). Following Kalibera & Jones ("Rigorous benchmarking in
reasonable time", ISMM 2013), the log of a ratio is modelled as

    log r = true value + between-run effect + round noise (+ between-process effect, within a run of several)

The within-run part is read from the run's own interval; the between-run part is measured once per machine
(``profilers calibrate``: K short runs spread over minutes) or, in a run whose processes were started apart in
time (``--spread-s``), from the spread of its processes. The rerun interval is where a rerun's ratio falls with
95% probability: the difference of two runs has twice each variance, and its t quantile takes the degrees of
freedom of the parts by Welch–Satterthwaite, so a between-run part resting on few runs widens it honestly.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from .noise import CI_LEVEL, Ratio, expanded_alpha, paired_ratio, seed_for, shared_rounds
from .stats import Z95, t_quantile


@dataclass(frozen=True)
class Between:
    """The between-run standard deviation of a log ratio, and what it rests on."""

    sd_log: float
    runs: int  # the number of runs (or spread processes) it was estimated from
    source: str  # "calibration 2026-12-03", "this run's processes"

    @property
    def df(self) -> int:
        return max(1, self.runs - 1)


@dataclass(frozen=True)
class Rerun:
    """A ratio's rerun interval and its parts (standard deviations on the log scale)."""

    value: float
    lo: float
    hi: float
    within_sd_log: float
    between: Between | None

    @property
    def excludes_one(self) -> bool:
        return not (self.lo <= 1.0 <= self.hi)

    @property
    def half_width_pct(self) -> float:
        return 100.0 * (self.hi - self.lo) / (2.0 * self.value) if self.value else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "within_sd_log": self.within_sd_log,
            "between_sd_log": self.between.sd_log if self.between else None,
            "between_runs": self.between.runs if self.between else None,
            "between_source": self.between.source if self.between else None,
        }


def within_sd_log(r: Ratio, rounds: int) -> float:
    """The run's own standard error of log(ratio), read back from its 95% interval: the expanded percentile
    interval of ``rounds`` values cuts ``expanded_alpha(rounds)`` from each tail, that many normal sds out."""
    if not (r.value > 0 and r.lo > 0 and r.hi > 0):
        return math.inf
    # two rounds cut nothing from the tails (the interval is their range): a floor keeps the quantile finite
    z = NormalDist().inv_cdf(1 - max(expanded_alpha(max(2, rounds)), 1e-6))
    return (math.log(r.hi) - math.log(r.lo)) / (2 * z)


def rerun_interval(r: Ratio, between: Between | None, rounds: int, level: float = CI_LEVEL) -> Rerun:
    """Where a rerun of the same comparison on this machine is expected to land (``level``, 95%)."""
    w = within_sd_log(r, rounds)
    b = between.sd_log if between else 0.0
    var = 2 * (w * w + b * b)  # the difference of two runs: each carries both parts
    if not math.isfinite(var):
        return Rerun(r.value, 0.0, math.inf, w, between)
    parts = [(w * w, max(1, rounds - 1))] + ([(b * b, between.df)] if between and b > 0 else [])
    num = sum(v for v, _ in parts) ** 2
    den = sum(v * v / df for v, df in parts)
    df = max(1, int(num / den)) if den > 0 else max(1, rounds - 1)
    q = t_quantile(0.5 + level / 2, df)
    half = q * math.sqrt(var)
    # never narrower than the run's own interval on either side (a skewed interval keeps its long side)
    lo, hi = min(r.lo, r.value * math.exp(-half)), max(r.hi, r.value * math.exp(half))
    return Rerun(r.value, lo, hi, w, between)


def between_from_runs(log_values: Sequence[float], within_sds: Sequence[float], source: str) -> Between | None:
    """The between-run sd from K runs' estimates of one log ratio: the spread of the estimates less what their
    own errors explain (never below zero), as in a one-way random-effects model. None with fewer than 2 runs."""
    k = len(log_values)
    if k < 2 or len(within_sds) != k:
        return None
    spread = statistics.variance(log_values)
    own = statistics.fmean(s * s for s in within_sds)
    return Between(math.sqrt(max(0.0, spread - own)), k, source)


def pooled(betweens: Sequence[Between], source: str) -> Between | None:
    """Several comparisons' between-run parts at one working-set level as one: the root mean square of their
    sds, resting on their runs together (each comparison's K runs)."""
    if not betweens:
        return None
    sd = math.sqrt(statistics.fmean(b.sd_log**2 for b in betweens))
    return Between(sd, min(b.runs for b in betweens), source)


def decision(name: str, other: str, r: Ratio, rerun: Rerun | None) -> str:
    """The sentence a user acts on: stated only when the rerun interval excludes 1."""
    faster = r.value < 1
    verb = "faster" if faster else "slower"
    pct = abs(100 * (1 - r.value))
    if not r.measurable:
        return f"{name} vs {other}: no measurable difference in this run (95% interval [{r.lo:.3f}, {r.hi:.3f}])"
    if rerun is None or rerun.between is None:
        return (
            f"{name} is {pct:.1f}% {verb} than {other} in this run; how far a rerun may move is not known here "
            "(no calibration of this machine: run `python -m profilers calibrate`)"
        )
    if rerun.excludes_one:
        return f"{name} is {pct:.1f}% {verb} than {other} here (rerun interval [{rerun.lo:.3f}, {rerun.hi:.3f}])"
    return (
        f"{name} is {pct:.1f}% {verb} than {other} in this run; a rerun may not agree "
        f"(rerun interval [{rerun.lo:.3f}, {rerun.hi:.3f}])"
    )


# ---- the dimensioning experiment: what K runs of the same small sweep say about this machine ---------------
BASELINE = ("layernorm", "native")


def _group_key(p: Mapping[str, Any]) -> tuple:
    return (p["tokens"], p.get("hidden"), p["dtype"], p["mode"])


# the sweep fields a run must share with the calibration for its baseline's time to be comparable
METHOD_FIELDS = ("threads", "cpu_allocator", "cpu_pages", "cpu_placement", "cache_state", "cuda_graph")


def method_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: spec.get(k) for k in METHOD_FIELDS}


def shape_key(tokens: int, hidden: int | None, dtype: str, mode: str) -> str:
    """How a calibrated baseline time is filed: shape, dtype and mode (a bf16 run is not held to fp32 times)."""
    return f"{tokens}x{hidden} {dtype} {mode}"


def calibrate(
    docs: Sequence[Mapping[str, Any]], source: str, rounds: int, method: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Levels from the exports of K runs of one sweep (``CalibrationSpec.sweep``): per working-set level, the
    between-run sd of log ratios (each candidate against LayerNorm native, pooled over the level's candidates),
    the per-round sd they came with, the baseline's p50 per run (a later run outside that range met the machine
    in another state), and the processes a target half-width needs at the calibrated rounds."""
    per: dict[tuple, dict[str, list]] = {}  # (group, variant, impl) → logs, sds, per-round log sds
    base_p50: dict[tuple, list[float]] = {}
    level_of_group: dict[tuple, str] = {}
    bytes_of_group: dict[tuple, int] = {}
    for doc in docs:
        pts = [p for p in doc["points"] if p["status"] in ("ok", "imprecise", "unstable")]
        bases = {_group_key(p): p for p in pts if (p["variant"], p["impl"]) == BASELINE}
        for key, base in bases.items():
            base_p50.setdefault(key, []).append(base["p50_us"])
            level_of_group[key] = base.get("roofline_level") or "unknown"
            bytes_of_group[key] = base.get("bytes_moved") or 0
        for p in pts:
            base = bases.get(_group_key(p))
            if base is None or p is base:
                continue
            shared = shared_rounds(p, base)
            if not shared:
                continue
            mine, theirs, _ = shared
            r = paired_ratio(mine, theirs, seed_for(source, p["variant"], p["impl"], *_group_key(p)))
            logs = [math.log(a / b) for a, b in zip(mine, theirs)]
            d = per.setdefault((_group_key(p), p["variant"], p["impl"]), {"logs": [], "sds": [], "round_sds": []})
            d["logs"].append(math.log(r.value))
            d["sds"].append(within_sd_log(r, len(mine)))
            d["round_sds"].append(statistics.stdev(logs) if len(logs) > 1 else 0.0)
    rows = []
    by_level: dict[str, list[Between]] = {}
    round_sd: dict[str, list[float]] = {}
    for (key, variant, impl), d in per.items():
        b = between_from_runs(d["logs"], d["sds"], source)
        if b is None:
            continue
        level = level_of_group[key]
        by_level.setdefault(level, []).append(b)
        round_sd.setdefault(level, []).extend(d["round_sds"])
        rows.append(
            {
                "tokens": key[0],
                "hidden": key[1],
                "dtype": key[2],
                "mode": key[3],
                "variant": variant,
                "impl": impl,
                "level": level,
                "ratios": [math.exp(v) for v in d["logs"]],
                "within_sd_log": statistics.fmean(d["sds"]),
                "between_sd_log": b.sd_log,
                "runs": b.runs,
            }
        )
    levels: dict[str, Any] = {}
    for level, bs in by_level.items():
        pool = pooled(bs, source)
        groups = [k for k, lv in level_of_group.items() if lv == level]
        sd_round = math.sqrt(statistics.fmean(s * s for s in round_sd[level])) if round_sd[level] else 0.0
        levels[level] = {
            "between_sd_log": pool.sd_log,
            "runs": pool.runs,
            "round_sd_log": sd_round,
            "bytes": sorted(bytes_of_group[k] for k in groups),
            "baseline_p50_us": {shape_key(*k): base_p50[k] for k in groups},
            "processes_for": {str(h): processes_for(h, pool.sd_log, sd_round, rounds) for h in (2.0, 5.0, 8.0)},
        }
    return {"source": source, "rounds": rounds, "method": dict(method or {}), "levels": levels, "ratios": rows}


def processes_for(half_width_pct: float, between_sd_log: float, round_sd_log: float, rounds: int) -> int | None:
    """How many processes (runs) of ``rounds`` rounds bring a ratio's 95% half-width to ``half_width_pct``:
    the variance of their mean is (σ_b² + σ_r²/R)/P (Kalibera & Jones' two-level design, rounds fixed); None
    when more than 16 would be needed."""
    h = math.log1p(half_width_pct / 100.0)
    per_process = between_sd_log**2 + round_sd_log**2 / max(1, rounds)
    for p in range(1, 17):
        q = t_quantile(0.975, max(1, p - 1)) if p > 1 else Z95 * 2  # one process: no spread of its own to lean on
        if q * math.sqrt(per_process / p) <= h:
            return p
    return None


def between_for(point: Mapping[str, Any], calibration: Mapping[str, Any] | None) -> Between | None:
    """The calibrated between-run part for a point, at its working-set level (the widest level when its own
    was not calibrated: an unknown level is not assumed quiet)."""
    if not calibration or not calibration.get("levels"):
        return None
    levels = calibration["levels"]
    lv = levels.get(point.get("roofline_level") or "")
    if lv is None:
        lv = max(levels.values(), key=lambda v: v["between_sd_log"])
    return Between(float(lv["between_sd_log"]), int(lv["runs"]), calibration["source"])


def state_changed(base_p50_us: float, level: Mapping[str, Any] | None, shape: str, margin: float = 0.25) -> str | None:
    """Why a group's baseline says the machine was in another state than when calibrated, or None: its p50 lies
    beyond the calibrated runs' range for the same shape by more than ``margin`` of that range's width (and
    at least 5%)."""
    if not level:
        return None
    seen = (level.get("baseline_p50_us") or {}).get(shape)
    if not seen:
        return None
    lo, hi = min(seen), max(seen)
    slack = max(margin * (hi - lo), 0.05 * statistics.median(seen))
    if base_p50_us > hi + slack or base_p50_us < lo - slack:
        return (
            f"the machine changed state: the baseline took {base_p50_us:,.1f} µs here against "
            f"{lo:,.1f}-{hi:,.1f} µs in the {len(seen)} calibrated runs"
        )
    return None


def process_clusters(process_medians: Sequence[float], within_sd_log: float) -> str | None:
    """Why a run's processes split into two states, or None: sorted by median, one gap between neighbours is
    more than four times the within-run error and more than half the whole spread (two clusters, not a tail)."""
    xs = sorted(math.log(v) for v in process_medians if v and v > 0)
    if len(xs) < 3:
        return None
    gaps = [b - a for a, b in itertools.pairwise(xs)]
    i = max(range(len(gaps)), key=gaps.__getitem__)
    spread = xs[-1] - xs[0]
    if gaps[i] > 4 * max(within_sd_log, 1e-3) and gaps[i] > 0.5 * spread:
        return (
            f"the machine changed state during this run: its processes split into two groups "
            f"({i + 1} and {len(xs) - i - 1}) {100 * math.expm1(gaps[i]):.0f}% apart"
        )
    return None


def _identity(machine: Mapping[str, Any]) -> tuple:
    gpu = machine.get("gpu") or {}
    return (machine.get("hostname"), machine.get("cpu_model"), machine.get("cpu_cores_logical"), gpu.get("uuid"))


def calibration_for(store: Any, machine: Mapping[str, Any], versions: Mapping[str, Any]) -> tuple[dict | None, str]:
    """The newest completed calibration of this machine in ``store`` and a sentence on it: which run and when,
    or why there is none to use (never calibrated; calibrated under another torch)."""
    older = None
    for run in store.list_runs(kind="calibration"):  # newest first
        if run["status"] != "completed" or _identity(run["machine"]) != _identity(machine):
            continue
        doc = store.artifact(run["id"], "calibration")
        if not doc:
            continue
        if (run.get("versions") or {}).get("torch") != versions.get("torch"):
            older = older or run
            continue
        return doc, f"between-run spread from {doc['source']}"
    if older is not None:
        return None, (
            f"the calibration of this machine (run {older['id']}) was made with torch "
            f"{(older.get('versions') or {}).get('torch')}, not {versions.get('torch')}: run `python -m profilers "
            "calibrate` again"
        )
    return None, "this machine has no calibration: run `python -m profilers calibrate` (a few minutes)"
