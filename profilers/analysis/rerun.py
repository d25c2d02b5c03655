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

Within one memory state, much of what moves a memory-bound ratio between runs is the copy bandwidth the run met
(each CPU group is timed between two probes of it). Where the calibration timed this very comparison, its log
ratio is regressed on the probes' log bandwidth, one intercept per memory state and one slope (an analysis of
covariance); the rerun interval is then the regression's prediction interval for a rerun at the bandwidth it
measures, centred on this run's ratio moved along the slope, with the slope's and the states' estimation
error in it (``Bandwidth``). A decision a user acts on holds over the state's whole calibrated bandwidth range.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
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
    source: str  # "calibration run 3 (2026-12-03 15:20 UTC)", "this run's 4 processes, started 30 s apart"
    # already inside the run's own interval: a run whose processes were started apart in time resampled them,
    # so its interval carries the between-run part and a rerun adds only its own copy of that interval
    included: bool = False
    dof: int | None = None  # its degrees of freedom when not runs − 1 (spread within memory states: K − states)

    @property
    def df(self) -> int:
        return max(1, self.dof if self.dof is not None else self.runs - 1)


@dataclass(frozen=True)
class Rerun:
    """A ratio's rerun interval and its parts (standard deviations on the log scale)."""

    value: float
    lo: float
    hi: float
    within_sd_log: float
    between: Between | None
    within_df: int | None = None
    state: str | None = None  # the calibrated memory state the run was in, when the machine has more than one
    other: dict[str, Any] | None = None  # where a rerun in the machine's other memory state is expected
    bandwidth: dict[str, Any] | None = None  # the calibrated ratio-on-bandwidth model (``Bandwidth.to_dict``)

    def _envelope(self) -> list[tuple[float, float]]:
        spans = [(self.lo, self.hi)] + ([(self.other["lo"], self.other["hi"])] if self.other else [])
        if self.bandwidth:  # a rerun may meet any bandwidth the calibration saw in either state
            for k, st in self.bandwidth["states"].items():
                spans += [at_bandwidth(self, g, int(k)) for g in (st["lo_gbps"], st["hi_gbps"])]
        return spans

    @property
    def lo_any(self) -> float:
        """The low end of where a rerun lands in any calibrated state (at any calibrated bandwidth)."""
        return min(lo for lo, _ in self._envelope())

    @property
    def hi_any(self) -> float:
        return max(hi for _, hi in self._envelope())

    @property
    def excludes_one(self) -> bool:
        """A rerun, in this memory state or the other calibrated one, is expected on the same side of 1."""
        return not (self.lo_any <= 1.0 <= self.hi_any)

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
            "between_included": bool(self.between and self.between.included),
            "within_df": self.within_df,
            "state": self.state,
            "other_state": self.other,
            "bandwidth": self.bandwidth,
        }


def within_sd_log(r: Ratio, rounds: int) -> float:
    """The run's own standard error of log(ratio), read back from its 95% interval: the expanded percentile
    interval of ``rounds`` values cuts ``expanded_alpha(rounds)`` from each tail, that many normal sds out."""
    if not (r.value > 0 and r.lo > 0 and r.hi > 0):
        return math.inf
    # two rounds cut nothing from the tails (the interval is their range): a floor keeps the quantile finite
    z = NormalDist().inv_cdf(1 - max(expanded_alpha(max(2, rounds)), 1e-6))
    return (math.log(r.hi) - math.log(r.lo)) / (2 * z)


def rerun_interval(
    r: Ratio, between: Between | None, rounds: int, level: float = CI_LEVEL, within_df: int | None = None
) -> Rerun:
    """Where a rerun of the same comparison on this machine is expected to land (``level``, 95%). The run's own
    part rests on ``within_df`` degrees of freedom (its rounds less one; a run over P processes, P − 1)."""
    w = within_sd_log(r, rounds)
    wdf = max(1, within_df if within_df is not None else rounds - 1)
    lo, hi = _spread(r, w, wdf, between)
    return Rerun(r.value, lo, hi, w, between, wdf)


def _spread(
    r: Ratio, w: float, wdf: int, between: Between | None, moved_log: float = 0.0, model_var: float = 0.0,
    level: float = CI_LEVEL,
) -> tuple[float, float]:  # fmt: skip
    """The rerun interval's ends: the difference of two runs carries each run's own part (``w``) and its
    between-run part twice, plus ``model_var``, the variance of an estimated move of the centre by
    ``moved_log`` (a bandwidth slope, a state shift), which rests on the between part's degrees of freedom."""
    b = between.sd_log if between and not between.included else 0.0
    var = 2 * (w * w + b * b) + model_var
    if not math.isfinite(var):
        return 0.0, math.inf
    parts = [(2 * w * w, wdf)] + ([(2 * b * b, between.df)] if between and b > 0 else [])
    parts += [(model_var, between.df)] if between and model_var > 0 else []
    num = sum(v for v, _ in parts) ** 2
    den = sum(v * v / df for v, df in parts)
    df = max(1, int(num / den)) if den > 0 else wdf
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(var)
    centre = r.value * math.exp(moved_log)
    # never narrower than the run's own interval on either side (a skewed interval keeps its long side)
    lo, hi = centre * math.exp(-half), centre * math.exp(half)
    if moved_log == 0.0:
        lo, hi = min(r.lo, lo), max(r.hi, hi)
    return lo, hi


def rerun_for(r: Ratio, point: Mapping[str, Any]) -> Rerun | None:
    """The rerun interval of a paired ratio ``r`` between two points of one run, from the between-run part
    stored on ``point`` (``extra.rerun``: its run's calibration at its working-set level and memory state, or
    its spread processes); None where the run had neither, or the ratio is not over shared rounds."""
    extra = point.get("extra") or {}
    part = extra.get("rerun") or {}
    if part.get("between_sd_log") is None or not r.method.startswith("paired"):
        return None
    own = (point.get("ratio"), point.get("ratio_lo"), point.get("ratio_hi")) == (r.value, r.lo, r.hi)
    if own and part.get("bandwidth") and part.get("lo") is not None:
        return rerun_of_point(point)  # the point's own ratio: its stored interval, at its measured bandwidth
    between = Between(
        part["between_sd_log"], part["between_runs"], part["between_source"], bool(part.get("between_included"))
    )
    base = rerun_interval(r, between, len(extra.get("rounds_us") or ()) or 2, within_df=part.get("within_df"))
    other = part.get("other_state")
    if not other:
        return base
    s = other["shift_log"]
    if other.get("signed"):
        moved = {**other, "lo": base.lo * math.exp(s), "hi": base.hi * math.exp(s)}
    else:
        moved = {**other, "lo": base.lo * math.exp(-abs(s)), "hi": base.hi * math.exp(abs(s))}
    state = part.get("state")
    return Rerun(base.value, base.lo, base.hi, base.within_sd_log, base.between, base.within_df, state, moved)


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


def from_processes(ratios: Sequence[Ratio], rounds: Sequence[int], spread_s: float) -> Between | None:
    """The between-run part of a run whose processes were started ``spread_s`` apart: the spread of the
    processes' own ratios beyond their own intervals, resting on their number, and already inside the run's
    interval (which resampled the processes). None with fewer than 2."""
    ok = [(r, n) for r, n in zip(ratios, rounds) if r.value > 0 and r.lo > 0]
    if len(ok) < 2:
        return None
    b = between_from_runs(
        [math.log(r.value) for r, _ in ok],
        [within_sd_log(r, n) for r, n in ok],
        f"this run's {len(ok)} processes, started {spread_s:g} s apart",
    )
    return Between(b.sd_log, b.runs, b.source, included=True) if b else None


def interval_text(rerun: Rerun) -> str:
    """The rerun interval as a user reads it: with the memory state it holds for, and the other state's."""
    text = f"rerun interval [{rerun.lo:.3f}, {rerun.hi:.3f}]"
    bw = rerun.bandwidth
    if bw and bw.get("range_gbps"):
        lo_g, hi_g = bw["range_gbps"]
        spans = [at_bandwidth(rerun, g, bw["state"]) for g in (lo_g, hi_g)]
        text += (
            f" at this run's copy bandwidth ({math.exp(bw['x1']):.0f} GB/s; [{min(a for a, _ in spans):.3f}, "
            f"{max(b for _, b in spans):.3f}] at {lo_g:.0f}-{hi_g:.0f} GB/s)"
        )
    if rerun.other:
        o = rerun.other
        text += f" in this run's {rerun.state}; [{o['lo']:.3f}, {o['hi']:.3f}] in its {o['state']}"
    return text


def decision(name: str, other: str, r: Ratio, rerun: Rerun | None) -> str:
    """The sentence a user acts on: stated only when the rerun interval excludes 1 (in every calibrated
    memory state of the machine)."""
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
        return f"{name} is {pct:.1f}% {verb} than {other} here ({interval_text(rerun)})"
    return f"{name} is {pct:.1f}% {verb} than {other} in this run; a rerun may not agree ({interval_text(rerun)})"


def at_bandwidth(rerun: Rerun, gbps: float, state: int) -> tuple[float, float]:
    """Where a rerun that measures copy bandwidth ``gbps`` in calibrated memory state ``state`` lands, from the
    calibrated regression of this comparison's log ratio on log bandwidth (``rerun.bandwidth``): this run's
    ratio moved by the fitted difference between the two bandwidths (and states), the fit's error in that move
    added to the two runs' own and between-run parts. Without a fitted model, the stored interval."""
    bw = rerun.bandwidth
    if not bw or str(state) not in bw["states"] or not (gbps and gbps > 0):
        return rerun.lo, rerun.hi
    here, there = bw["states"][str(bw["state"])], bw["states"][str(state)]
    x1, x2, slope = bw["x1"], math.log(gbps), bw["slope"]
    moved = slope * (x2 - x1)
    lever = (x2 - there["x_mean"]) - (x1 - here["x_mean"])
    model_var = bw["s2"] * lever * lever / bw["sxx"]
    if state != bw["state"]:  # the states' intercepts: each a mean of that state's calibrated runs
        moved += (there["y_mean"] - slope * there["x_mean"]) - (here["y_mean"] - slope * here["x_mean"])
        model_var += bw["s2"] * (1 / there["n"] + 1 / here["n"])
    between = Between(bw["between_sd_log"], bw["runs"], "", dof=bw["df"])
    ratio = Ratio(rerun.value, rerun.lo, rerun.hi, "paired rounds")
    return _spread(ratio, rerun.within_sd_log, rerun.within_df or 1, between, moved, model_var)


def bandwidth_fit(
    logs: Sequence[float], sds: Sequence[float], xs: Sequence[float | None], labels: Sequence[int | None]
) -> dict[str, Any] | None:
    """One comparison's K calibrated runs as log ratio = intercept of its memory state + slope × log copy
    bandwidth (an analysis of covariance; runs without probes, or whose probes span two states, left out):
    the slope, the within-state spread of log bandwidth (Sxx), the residual mean square and its degrees of
    freedom, the between-run sd left beyond the runs' own errors, and each state's means. None where the runs
    leave no degree of freedom or the bandwidth never moved."""
    use = [(y, x, sd, lab) for y, x, sd, lab in zip(logs, xs, sds, labels) if x is not None and lab is not None]
    by: dict[int, list[tuple[float, float]]] = {}
    for y, x, _, lab in use:
        by.setdefault(lab, []).append((x, y))
    df = len(use) - len(by) - 1
    if df < 1:
        return None
    means = {k: (statistics.fmean(x for x, _ in v), statistics.fmean(y for _, y in v)) for k, v in by.items()}
    sxx = sum((x - means[k][0]) ** 2 for k, v in by.items() for x, _ in v)
    if sxx <= 1e-12:
        return None
    slope = sum((x - means[k][0]) * (y - means[k][1]) for k, v in by.items() for x, y in v) / sxx
    ss = sum((y - means[k][1] - slope * (x - means[k][0])) ** 2 for k, v in by.items() for x, y in v)
    s2 = ss / df
    own = statistics.fmean(sd * sd for *_, sd, _ in use)
    return {
        "slope": slope,
        "slope_se": math.sqrt(s2 / sxx),
        "sxx": sxx,
        "s2": s2,
        "df": df,
        "sd_log": math.sqrt(max(0.0, s2 - own)),
        "states": {str(k): {"n": len(v), "x_mean": means[k][0], "y_mean": means[k][1]} for k, v in by.items()},
    }


def rerun_of_point(point: Mapping[str, Any]) -> Rerun | None:
    """A candidate's stored rerun interval (``extra.rerun``) against its baseline, or None where its run had no
    calibration (or spread processes) to give one."""
    part = (point.get("extra") or {}).get("rerun") or {}
    if part.get("between_sd_log") is None or part.get("lo") is None or point.get("ratio") is None:
        return None
    between = Between(
        part["between_sd_log"], part["between_runs"], part["between_source"], bool(part.get("between_included"))
    )
    return Rerun(
        point["ratio"], part["lo"], part["hi"], part.get("within_sd_log") or 0.0, between, part.get("within_df"),
        part.get("state"), part.get("other_state"), part.get("bandwidth"),
    )  # fmt: skip


# ---- the dimensioning experiment: what K runs of the same small sweep say about this machine ---------------
BASELINE = ("layernorm", "native")
# the fewest residual degrees of freedom a bandwidth fit must leave before a rerun interval rests on it: on the
# 2-core VM, fits on 4 df (6 calibration runs) held 12 of 16 DRAM reruns, fits on 8-12 df held all 16
# (benchmarks/cpu_agreement.py --refit): below that the fit's own spread is too poorly known to trust
MIN_BANDWIDTH_DF = 8
STATE_GAP = math.log(1.25)  # two memory states: their copy bandwidths more than 25% apart


def _group_key(p: Mapping[str, Any]) -> tuple:
    return (p["tokens"], p.get("hidden"), p["dtype"], p["mode"])


# the sweep fields a run must share with the calibration for its baseline's time to be comparable
METHOD_FIELDS = ("threads", "cpu_allocator", "cpu_pages", "cpu_placement", "cache_state", "cuda_graph")


def method_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: spec.get(k) for k in METHOD_FIELDS}


def shape_key(tokens: int, hidden: int | None, dtype: str, mode: str) -> str:
    """How a calibrated baseline time is filed: shape, dtype and mode (a bf16 run is not held to fp32 times)."""
    return f"{tokens}x{hidden} {dtype} {mode}"


def memory_copy_gbps(extra: Mapping[str, Any] | None) -> list[float]:
    """The copy bandwidths probed before and after a point's group (``extra.memory_state``), or []."""
    vals = ((extra or {}).get("memory_state") or {}).get("copy_gbps") or []
    return [float(v) for v in vals if v and v > 0]


def memory_states(values: Sequence[float]) -> list[dict[str, Any]]:
    """The memory states a set of copy bandwidths (GB/s) fall in: one, or two when the best split of their
    logs into a lower and an upper cluster leaves at most a quarter of their spread inside the clusters, the
    clusters' means are more than 25% apart, and each holds at least two probes (probes taken while the
    machine moved between states fall in between and widen the cluster they join)."""
    xs = sorted(math.log(v) for v in values if v and v > 0)
    if not xs:
        return []

    def ss(part: Sequence[float]) -> float:
        m = statistics.fmean(part)
        return sum((x - m) ** 2 for x in part)

    total, cut = ss(xs), None
    if len(xs) >= 4 and total > 0:
        i = min(range(2, len(xs) - 1), key=lambda k: ss(xs[:k]) + ss(xs[k:]))
        apart = statistics.fmean(xs[i:]) - statistics.fmean(xs[:i])
        if apart > STATE_GAP and ss(xs[:i]) + ss(xs[i:]) <= 0.25 * total:
            cut = i
    parts = [xs] if cut is None else [xs[:cut], xs[cut:]]
    return [
        {"lo_gbps": math.exp(p[0]), "hi_gbps": math.exp(p[-1]), "mid_gbps": math.exp(statistics.fmean(p)),
         "groups": len(p)}
        for p in parts
    ]  # fmt: skip


def state_of(values: Sequence[float], states: Sequence[Mapping[str, Any]], slack: float = 0.10) -> int | None:
    """Which calibrated memory state copy bandwidths ``values`` (a group's before and after probes) name: the
    state whose range, widened by ``slack``, holds all of them (with two states the nearer one, when each is
    held by its own widened range); None when they fall outside every state or span two."""
    if not states or not values:
        return None
    found = set()
    for v in values:
        near = [
            (abs(math.log(v) - math.log(st.get("mid_gbps") or math.sqrt(st["lo_gbps"] * st["hi_gbps"]))), k)
            for k, st in enumerate(states)
            if st["lo_gbps"] / (1 + slack) <= v <= st["hi_gbps"] * (1 + slack)
        ]
        if not near:
            return None
        found.add(min(near)[1])
    return found.pop() if len(found) == 1 else None


def state_name(states: Sequence[Mapping[str, Any]], k: int) -> str:
    st = states[k]
    return f"memory state {k + 1} of {len(states)} (copy {st['lo_gbps']:.0f}-{st['hi_gbps']:.0f} GB/s)"


def _within_states(logs: Sequence[float], sds: Sequence[float], labels: Sequence[int | None]) -> dict[str, Any]:
    """One comparison's K runs split by memory state: the spread about each state's own mean (a one-way
    model with the state as a fixed effect, less what the runs' own errors explain), its degrees of freedom,
    and the shift between the two states' means (None with one state)."""
    by: dict[int | None, list[float]] = {}
    for v, lab in zip(logs, labels):
        by.setdefault(lab, []).append(v)
    df = len(logs) - len(by)
    if df < 1:
        return {"sd": None, "df": 0, "shift": None}
    ss = sum((v - statistics.fmean(vs)) ** 2 for vs in by.values() for v in vs)
    own = statistics.fmean(x * x for x in sds)
    means = [statistics.fmean(by[k]) for k in sorted(k for k in by if k is not None)]
    shift = means[1] - means[0] if len(means) == 2 else None
    return {"sd": math.sqrt(max(0.0, ss / df - own)), "df": df, "shift": shift}


def calibration_inputs(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The K runs' exports cut to what ``calibrate`` reads (each point's rounds and memory probes, each run's
    times): stored beside the calibration, so it can be refitted from any of its first runs."""
    keep = ("rounds_us", "rounds_process", "rounds_index", "memory_state")
    fields = ("variant", "impl", "tokens", "hidden", "dtype", "mode", "status", "p50_us", "roofline_level")

    def cut(p: Mapping[str, Any]) -> dict[str, Any]:
        extra = {k: v for k, v in (p.get("extra") or {}).items() if k in keep}
        return {**{k: p.get(k) for k in (*fields, "bytes_moved")}, "extra": extra}

    times = ("created_at", "finished_at")
    return [{"run": {k: d["run"].get(k) for k in times}, "points": [cut(p) for p in d["points"]]} for d in docs]


def calibrate(
    docs: Sequence[Mapping[str, Any]], source: str, rounds: int, method: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Levels from the exports of K runs of one sweep (``CalibrationSpec.sweep``): the machine's memory states
    (the copy bandwidth probed around each group, clustered), and per working-set level the between-run sd of
    log ratios within a state (each candidate against LayerNorm native, pooled over the level's candidates),
    the shift between the two states where there are two, the sd over all runs, the per-round sd, the
    baseline's p50 per run (a later run outside that range met the machine in another state), and the
    processes a target half-width needs at the calibrated rounds."""
    per: dict[tuple, dict[str, list]] = {}  # (group, variant, impl) → logs, sds, per-round log sds, probes
    base_p50: dict[tuple, list[float]] = {}
    level_of_group: dict[tuple, str] = {}
    bytes_of_group: dict[tuple, int] = {}
    probes: list[float] = []
    for doc in docs:
        pts = [p for p in doc["points"] if p["status"] in ("ok", "imprecise", "unstable")]
        bases = {_group_key(p): p for p in pts if (p["variant"], p["impl"]) == BASELINE}
        for key, base in bases.items():
            base_p50.setdefault(key, []).append(base["p50_us"])
            level_of_group[key] = base.get("roofline_level") or "unknown"
            bytes_of_group[key] = base.get("bytes_moved") or 0
            probes += memory_copy_gbps(base.get("extra"))
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
            d = per.setdefault(
                (_group_key(p), p["variant"], p["impl"]), {"logs": [], "sds": [], "round_sds": [], "probes": []}
            )
            d["logs"].append(math.log(r.value))
            d["sds"].append(within_sd_log(r, len(mine)))
            d["round_sds"].append(statistics.stdev(logs) if len(logs) > 1 else 0.0)
            d["probes"].append(memory_copy_gbps(base.get("extra")))
    states = memory_states(probes)

    def log_copy(values: Sequence[float]) -> float | None:
        return statistics.fmean(math.log(v) for v in values) if values else None

    rows = []
    by_level: dict[str, list[tuple[Between, dict[str, Any]]]] = {}
    round_sd: dict[str, list[float]] = {}
    fits: dict[str, list[dict[str, Any] | None]] = {}
    for (key, variant, impl), d in per.items():
        b = between_from_runs(d["logs"], d["sds"], source)
        if b is None:
            continue
        labels = [state_of(v, states) for v in d["probes"]] if len(states) > 1 else [0] * len(d["logs"])
        ws = _within_states(d["logs"], d["sds"], labels)
        fit = bandwidth_fit(d["logs"], d["sds"], [log_copy(v) for v in d["probes"]], labels)
        level = level_of_group[key]
        by_level.setdefault(level, []).append((b, ws))
        fits.setdefault(level, []).append(fit)
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
                "states": labels,
                "copy_gbps": d["probes"],
                "within_sd_log": statistics.fmean(d["sds"]),
                "within_sd_logs": d["sds"],
                "between_sd_log": b.sd_log,
                "bandwidth": fit,
                "within_state_sd_log": ws["sd"],
                "state_shift_log": ws["shift"],
                "runs": b.runs,
            }
        )
    levels: dict[str, Any] = {}
    for level, parts in by_level.items():
        every = pooled([b for b, _ in parts], source)
        inside = [ws for _, ws in parts if ws["sd"] is not None]
        # within a state where the runs allow it (each state's mean is one degree of freedom), else all runs
        if len(states) > 1 and inside:
            sd_b = math.sqrt(statistics.fmean(ws["sd"] ** 2 for ws in inside))
            dof = min(ws["df"] for ws in inside)
        else:
            sd_b, dof = every.sd_log, None
        shifts = [ws["shift"] for _, ws in parts if ws["shift"] is not None]
        groups = [k for k, lv in level_of_group.items() if lv == level]
        sd_round = math.sqrt(statistics.fmean(s * s for s in round_sd[level])) if round_sd[level] else 0.0
        fitted = [f for f in fits.get(level, []) if f]
        levels[level] = {
            # within a state at the bandwidth a run measured: the spread the regression on bandwidth leaves
            "bandwidth_sd_log": math.sqrt(statistics.fmean(f["sd_log"] ** 2 for f in fitted)) if fitted else None,
            "bandwidth_dof": min(f["df"] for f in fitted) if fitted else None,
            "bandwidth_fits": len(fitted),
            "between_sd_log": sd_b,
            "runs": every.runs,
            "dof": dof,
            "between_sd_log_all": every.sd_log,
            "state_shift_log": math.sqrt(statistics.fmean(x * x for x in shifts)) if shifts else None,
            "round_sd_log": sd_round,
            "bytes": sorted(bytes_of_group[k] for k in groups),
            "baseline_p50_us": {shape_key(*k): base_p50[k] for k in groups},
            "processes_for": {str(h): processes_for(h, sd_b, sd_round, rounds) for h in (2.0, 5.0, 8.0)},
        }
    return {
        "source": source,
        "rounds": rounds,
        "method": dict(method or {}),
        "memory_states": states,
        "levels": levels,
        "ratios": rows,
    }


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


def _level_of(point: Mapping[str, Any], calibration: Mapping[str, Any]) -> Mapping[str, Any]:
    levels = calibration["levels"]
    lv = levels.get(point.get("roofline_level") or "")
    # the widest level when its own was not calibrated: an unknown level is not assumed quiet
    widest = max(levels.values(), key=lambda v: v.get("between_sd_log_all", v["between_sd_log"]))
    return lv if lv is not None else widest


def between_for(point: Mapping[str, Any], calibration: Mapping[str, Any] | None) -> Between | None:
    """The calibrated between-run part for a point at its working-set level: within its memory state when the
    machine has two and the point's group was probed in one of them, else over all the calibrated runs."""
    if not calibration or not calibration.get("levels"):
        return None
    lv = _level_of(point, calibration)
    states = calibration.get("memory_states") or []
    known = len(states) > 1 and state_of(memory_copy_gbps(point.get("extra")), states) is not None
    if len(states) > 1 and not known:
        sd = lv.get("between_sd_log_all", lv["between_sd_log"])
        return Between(float(sd), int(lv["runs"]), calibration["source"])
    return Between(float(lv["between_sd_log"]), int(lv["runs"]), calibration["source"], dof=lv.get("dof"))


def point_rerun(
    r: Ratio, point: Mapping[str, Any], calibration: Mapping[str, Any] | None, rounds: int,
    within_df: int | None = None, own: Between | None = None, bandwidth: bool = True,
) -> Rerun:  # fmt: skip
    """A candidate's rerun interval: from ``own`` (its run's spread processes) or the calibration's between-run
    part in the point's memory state; where the machine has a second state, where a rerun there is expected
    (the level's calibrated shift either way, since its sign differs between comparisons). Where the
    calibration fitted this very comparison's ratio on copy bandwidth (and ``bandwidth``), the interval is
    that regression's prediction for a rerun at this run's bandwidth (``at_bandwidth`` for another)."""
    between = own or between_for(point, calibration)
    base = rerun_interval(r, between, rounds, within_df=within_df)
    if own is not None or not calibration:
        return base
    fitted = _bandwidth_rerun(base, r, point, calibration) if bandwidth else None
    states = calibration.get("memory_states") or []
    k = state_of(memory_copy_gbps(point.get("extra")), states) if len(states) > 1 else None
    if k is None:
        return fitted or base
    o = 1 - k
    if fitted is not None and fitted.other is not None:
        return fitted
    row = _calibrated_row(point, calibration)
    own_shift = (row or {}).get("state_shift_log")
    if own_shift is not None:  # this very comparison was calibrated: the other state moves it one way
        d = own_shift * (o - k)
        other = {"lo": base.lo * math.exp(d), "hi": base.hi * math.exp(d), "shift_log": d, "signed": True}
    else:
        shift = _level_of(point, calibration).get("state_shift_log")
        if not shift:
            return fitted or base
        s = abs(shift)  # the level's shift, either way: its sign differs between comparisons
        other = {"lo": base.lo * math.exp(-s), "hi": base.hi * math.exp(s), "shift_log": s, "signed": False}
    other["state"] = state_name(states, o)
    if fitted is not None:
        return Rerun(fitted.value, fitted.lo, fitted.hi, fitted.within_sd_log, fitted.between, fitted.within_df,
                     fitted.state, other, fitted.bandwidth)  # fmt: skip
    return Rerun(base.value, base.lo, base.hi, base.within_sd_log, base.between, base.within_df,
                 state_name(states, k), other)  # fmt: skip


def _bandwidth_rerun(base: Rerun, r: Ratio, point: Mapping[str, Any], calibration: Mapping[str, Any]) -> Rerun | None:
    """The rerun interval from the calibrated regression of this comparison's ratio on copy bandwidth, at the
    bandwidth this point's group was probed at, with where a rerun in the other state lands (at that state's
    mean calibrated bandwidth); None where the comparison was not fitted or the point has no probes in a state
    the fit saw, or where the fits leave fewer than ``MIN_BANDWIDTH_DF`` degrees of freedom (the state's
    interval is then the narrower one)."""
    row = _calibrated_row(point, calibration)
    fit = (row or {}).get("bandwidth")
    lv = _level_of(point, calibration)
    probes = memory_copy_gbps(point.get("extra"))
    states = calibration.get("memory_states") or []
    if not fit or not probes or not states or lv.get("bandwidth_sd_log") is None:
        return None
    if (lv.get("bandwidth_dof") or 0) < MIN_BANDWIDTH_DF:
        return None
    k = state_of(probes, states) if len(states) > 1 else 0
    if k is None or str(k) not in fit["states"]:
        return None
    x1 = statistics.fmean(math.log(v) for v in probes)
    bw = {
        **{key: fit[key] for key in ("slope", "slope_se", "sxx", "s2")},
        "df": lv["bandwidth_dof"],
        "between_sd_log": lv["bandwidth_sd_log"],
        "runs": int(lv["runs"]),
        "x1": x1,
        "state": k,
        "range_gbps": [states[k]["lo_gbps"], states[k]["hi_gbps"]],
        "states": {key: {**st, **_range(states[int(key)])} for key, st in fit["states"].items()},
    }
    name = state_name(states, k) if len(states) > 1 else None
    pre = Rerun(r.value, r.lo, r.hi, base.within_sd_log, base.between, base.within_df, name, None, bw)
    lo, hi = at_bandwidth(pre, math.exp(x1), k)
    other = None
    if len(states) > 1 and str(1 - k) in fit["states"]:
        there = math.exp(fit["states"][str(1 - k)]["x_mean"])
        olo, ohi = at_bandwidth(pre, there, 1 - k)
        other = {"lo": olo, "hi": ohi, "shift_log": math.log(math.sqrt(olo * ohi) / r.value), "signed": True,
                 "state": state_name(states, 1 - k), "at_gbps": there}  # fmt: skip
    return Rerun(r.value, lo, hi, base.within_sd_log, base.between, base.within_df, name, other, bw)


def _range(state: Mapping[str, Any]) -> dict[str, float]:
    return {"lo_gbps": state["lo_gbps"], "hi_gbps": state["hi_gbps"]}


def _calibrated_row(point: Mapping[str, Any], calibration: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The calibration's row for this very comparison (the same variant, implementation, shape, dtype and mode
    against LayerNorm native), or None."""
    if point.get("ratio_baseline") != " ".join(BASELINE):
        return None
    key = (point.get("tokens"), point.get("hidden"), point.get("dtype"), point.get("mode"))
    key += (point.get("variant"), point.get("impl"))
    for row in calibration.get("ratios") or []:
        if (row["tokens"], row["hidden"], row["dtype"], row["mode"], row["variant"], row["impl"]) == key:
            return row
    return None


def memory_state_change(point: Mapping[str, Any], calibration: Mapping[str, Any] | None) -> str | None:
    """Why a group's memory probes say the machine was not in a calibrated state, or None: its before and
    after probes in two states (it changed during the group), or outside every state the calibration saw."""
    states = (calibration or {}).get("memory_states") or []
    probes = memory_copy_gbps(point.get("extra"))
    if not states or not probes or state_of(probes, states) is not None:
        return None
    seen = ", ".join(f"{st['lo_gbps']:.0f}-{st['hi_gbps']:.0f}" for st in states)
    if len(probes) == 2 and all(state_of([v], states) is not None for v in probes):
        return (
            f"the machine changed memory state during this group: copy bandwidth {probes[0]:.0f} → "
            f"{probes[1]:.0f} GB/s (calibrated states {seen} GB/s)"
        )
    return (
        "the machine was in a memory state its calibration did not see: copy bandwidth "
        f"{'-'.join(dict.fromkeys(f'{v:.0f}' for v in probes))} GB/s against {seen} GB/s in the calibrated runs"
    )


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


def group_state_change(
    baselines: Iterable[tuple[float | None, str | None, str]], calibration: Mapping[str, Any] | None
) -> str | None:
    """Why a group's baseline says the machine was in another state than when calibrated, or None; each
    baseline as (p50 µs, working-set level, ``shape_key``). Only for a run measured as the calibration was."""
    if not calibration:
        return None
    for p50, level, key in baselines:
        if p50 is not None:
            why = state_changed(p50, calibration["levels"].get(level or ""), key)
            if why:
                return why
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
