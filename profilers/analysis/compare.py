"""Compare runs point by point: machines side by side, and regressions against a baseline.

Points match on (variant, impl, dtype, tokens, hidden, mode). On the same
machine with the same method (``method.differences`` is empty: budget, rounds,
timer, threads, cache state, allocator, torch) each difference is decided
against a margin of practical equivalence (``analysis/equivalence``: ±2% for a
kernel by default) on its 95% interval (``noise.ratio_between``), widened, where
the machine was calibrated, by how far its times move between runs
(``p50_between_sd``: a rerun tomorrow meets the machine in another state, so two
runs differ by more than their own intervals say): a regression (slower by more
than the margin), faster (by more than it), equivalent (within it) or
undecided. Otherwise it is a "method difference" (stated, never a regression)
or, across machines, a machine difference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..catalog import KERNEL_MARGIN_PCT, TIMED_STATUSES
from . import equivalence as eq
from .noise import Ratio, ratio_between
from .stats import Z95

KEY = ("variant", "impl", "dtype", "tokens", "hidden", "mode")
FLAGS = ("regression", "faster", "equivalent", "undecided", "method difference", "machine difference")
_FLAG_OF = {eq.SLOWER: "regression", eq.FASTER: "faster", eq.EQUIVALENT: "equivalent", eq.UNDECIDED: "undecided"}


def machine_key(run: dict[str, Any]) -> tuple:
    """What makes two runs 'the same machine': host, CPU model, and the GPU's UUID (or name)."""
    m = run.get("machine") or {}
    gpu = m.get("gpu") or {}
    return (
        m.get("hostname"),
        m.get("cpu_model"),
        run.get("spec", {}).get("device"),
        gpu.get("uuid") or gpu.get("name"),
    )


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What tells two runs' machines apart, each as 'what: a vs b', in ``machine_key``'s order: the host, the
    CPU model, the device measured, the GPU (its UUID where both runs name the same model). [] on one machine."""
    ma, mb = a.get("machine") or {}, b.get("machine") or {}
    ga, gb = ma.get("gpu") or {}, mb.get("gpu") or {}
    out = []
    for what, x, y in (
        ("host", ma.get("hostname"), mb.get("hostname")),
        ("CPU", ma.get("cpu_model"), mb.get("cpu_model")),
        ("device", (a.get("spec") or {}).get("device"), (b.get("spec") or {}).get("device")),
    ):
        if x != y:
            out.append(f"{what} {x or 'unknown'} vs {y or 'unknown'}")
    if ga.get("name") != gb.get("name"):
        out.append(f"GPU {ga.get('name') or 'none'} vs {gb.get('name') or 'none'}")
    elif (ga.get("uuid") or ga.get("name")) != (gb.get("uuid") or gb.get("name")):
        ua, ub = _cut_apart([ga.get("uuid") or "unknown", gb.get("uuid") or "unknown"])
        out.append(f"{ga.get('name') or 'GPU'} {ua} vs {ub}")
    return out


def _cut_apart(uuids: Sequence[str], least: int = 12) -> list[str]:
    """Each of ``uuids`` cut at the first length (at least ``least``) where no two distinct ones agree."""
    distinct = sorted(set(uuids))
    longest = max(map(len, distinct), default=least)
    n = next((i for i in range(least, longest + 1) if len({u[:i] for u in distinct}) == len(distinct)), longest)
    return [u if len(u) <= n else f"{u[:n]}…" for u in uuids]


def machine_label(run: dict[str, Any]) -> str:
    """How a picker names a run's machine: its host and the device it measured (the GPU, or the CPU model)."""
    m = run.get("machine") or {}
    gpu = (m.get("gpu") or {}).get("name")
    device = gpu if gpu and run.get("spec", {}).get("device", "cpu") != "cpu" else m.get("cpu_model") or "CPU"
    return f"{m.get('hostname') or 'unknown host'} · {device}"


def machine_labels(runs: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Each run's ``machine_label`` by its id. Where runs of one label are on machines ``machine_key`` tells
    apart, whichever of CPU, device and GPU UUID (cut where they part) differ are added, so a picker offers
    every machine once and no two machines under one name."""
    groups: dict[str, dict[tuple, list[int]]] = {}
    for r in runs:
        groups.setdefault(machine_label(r), {}).setdefault(machine_key(r), []).append(r["id"])
    out: dict[int, str] = {}
    for label, keys in groups.items():
        if len(keys) == 1:
            out.update({i: label for ids in keys.values() for i in ids})
            continue
        # the label holds the host and the device's name: add whichever of CPU, device and UUID differ
        parts = [[str(k[j] or "unknown") for k in keys] for j in (1, 2, 3) if len({k[j] for k in keys}) > 1]
        if len({k[3] for k in keys}) > 1:
            parts[-1] = _cut_apart(parts[-1])
        for suffix, ids in zip(zip(*parts), keys.values()):
            out.update({i: f"{label} · {' · '.join(suffix)}" for i in ids})
    return out


def fleets(runs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs of each sweep over a cluster (one run per device, ``extra.fleet``), by its uid, in the order of
    its devices; the newest sweep first, as ``runs`` come."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        f = (r.get("extra") or {}).get("fleet")
        if isinstance(f, dict) and f.get("uid"):
            out.setdefault(f["uid"], []).append(r)
    for members in out.values():
        members.sort(key=lambda r: (r["extra"]["fleet"].get("slot", 0), r["id"]))
    return out


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return machine_key(a) == machine_key(b)


@dataclass(frozen=True)
class Row:
    """One point timed in both runs: the baseline's, the other's, and what the difference means."""

    key: tuple  # (variant, impl, dtype, tokens, hidden, mode)
    base: dict[str, Any]
    other: dict[str, Any]
    diff_pct: float  # other p50 relative to the baseline's, in %
    band_pct: float  # half-width of the 95% interval of diff_pct, in percentage points
    flag: str  # one of FLAGS
    lo_pct: float | None = None  # the interval of diff_pct
    hi_pct: float | None = None
    interval: str = "the runs' own"  # or "widened by the calibrated between-run spread"
    verdict: eq.Verdict | None = None  # the change decided at the margin (same machine, same method)

    @property
    def variant(self) -> str:
        return self.key[0]

    @property
    def impl(self) -> str:
        return self.key[1]

    @property
    def dtype(self) -> str:
        return self.key[2]

    @property
    def tokens(self) -> int:
        return self.key[3]

    @property
    def hidden(self) -> int:
        return self.key[4]

    @property
    def mode(self) -> str:
        return self.key[5]


def p50_between_sd(calibration: Mapping[str, Any] | None) -> dict[str, float]:
    """Per working-set level, the between-run sd of log p50 in the machine's calibration: over its runs, the
    spread of each calibrated point's time (the baseline's, and each candidate's as its ratio times the
    baseline's), root mean square over the level's points, in every memory state (a rerun may meet either).
    It includes the runs' own error, so it errs wide. {} without a calibration."""
    if not calibration:
        return {}
    spreads: dict[str, list[float]] = {}
    for level, lv in (calibration.get("levels") or {}).items():
        for times in (lv.get("baseline_p50_us") or {}).values():
            if len(times) > 1:
                spreads.setdefault(level, []).append(statistics.stdev(math.log(t) for t in times))
    for row in calibration.get("ratios") or []:
        key = f"{row['tokens']}x{row['hidden']} {row['dtype']} {row['mode']}"
        base = ((calibration["levels"].get(row["level"]) or {}).get("baseline_p50_us") or {}).get(key) or []
        if len(base) == len(row["ratios"]) > 1:
            logs = [math.log(r * b) for r, b in zip(row["ratios"], base)]
            spreads.setdefault(row["level"], []).append(statistics.stdev(logs))
    return {lv: math.sqrt(statistics.fmean(x * x for x in v)) for lv, v in spreads.items() if v}


def level_lookup(spread: Mapping[str, float]) -> Callable[[dict[str, Any]], float | None] | None:
    """``between`` for ``match_points`` from ``p50_between_sd``: a point's level, or the widest calibrated one
    where its own was not calibrated (an unknown level is not assumed quiet); None without a calibration."""
    if not spread:
        return None
    widest = max(spread.values())
    return lambda p: spread.get(p.get("roofline_level") or "", widest)


def widened(r: Ratio, sd_log: float) -> Ratio:
    """``r`` (a time of one run over another's) with the two runs' between-run parts added on the log scale:
    each run carries its own, so the difference carries twice the variance."""
    if not (r.value > 0 and r.lo > 0 and r.hi > 0):
        return r
    extra = 2 * (Z95 * sd_log) ** 2
    down = math.sqrt(max(0.0, math.log(r.value / r.lo)) ** 2 + extra)  # each side widened on its own: a
    up = math.sqrt(max(0.0, math.log(r.hi / r.value)) ** 2 + extra)  # skewed interval keeps its shape
    return Ratio(r.value, min(r.lo, r.value * math.exp(-down)), max(r.hi, r.value * math.exp(up)), r.method)


def match_points(
    base_points: Sequence[dict[str, Any]],
    other_points: Sequence[dict[str, Any]],
    same: bool,
    method_differs: bool = False,
    between: Callable[[dict[str, Any]], float | None] | None = None,
    margin_pct: float = KERNEL_MARGIN_PCT,
) -> list[Row]:
    """Rows for every point timed in both runs, flagged as the module docstring says; ``between(point)`` is
    the between-run sd of log p50 at the point's level on this machine (None where not calibrated)."""
    eq.check_margin(margin_pct)

    def timed(p: dict[str, Any]) -> bool:
        return p["status"] in TIMED_STATUSES and bool(p.get("p50_us"))

    base = {tuple(p[k] for k in KEY): p for p in base_points if timed(p)}
    rows = []
    for p in other_points:
        key = tuple(p[k] for k in KEY)
        b = base.get(key)
        if b is None or not timed(p):
            continue
        r = ratio_between(b, p)
        sd = between(p) if between and same else None
        interval = "the runs' own"
        if sd:
            r, interval = widened(r, sd), "widened by the calibrated between-run spread"
        diff, lo, hi = 100 * (r.value - 1), 100 * (r.lo - 1), 100 * (r.hi - 1)
        v = None
        if not same:
            flag = "machine difference"
        elif method_differs:
            flag = "method difference"
        else:
            n = min(len((q.get("extra") or {}).get("rounds_us") or ()) for q in (b, p)) or None
            v = eq.judge(r.value, r.lo, r.hi, margin_pct, n, "rounds", f"{interval} 95% interval")
            flag = _FLAG_OF[v.kind]
        rows.append(Row(key, b, p, diff, r.half_width_points, flag, lo, hi, interval, v))
    return rows
