"""A calibration run's part of a report: how far reruns move on the machine, per working-set level."""

from __future__ import annotations

import math
from typing import Any

from ..analysis.rerun import MIN_BANDWIDTH_DF
from ..store import Store
from .html import esc, table


def _pct(sd: float | None) -> str:
    # the spread of the runs less what their own errors explain, clamped at 0: no more than they explain
    if sd is None:
        return "N/A (one run per state)"
    return f"{100 * sd:.2f}%" if sd > 0 else "none beyond the runs' own error"


def level_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One row per working-set level: the between-run and per-round spread, the shift between the machine's
    memory states where it has two, and the processes a target needs (the Hardware page's table and the
    report's)."""
    rows = []
    two = len((doc or {}).get("memory_states") or []) > 1
    for name, lv in sorted((doc or {}).get("levels", {}).items()):
        need = lv.get("processes_for") or {}
        row = {"level": name, "between-run sd" + (" within a state" if two else ""): _pct(lv["between_sd_log"])}
        fitted, dof = lv.get("bandwidth_sd_log"), lv.get("bandwidth_dof") or 0
        if fitted is None:
            at_bw = "N/A (too few runs to fit the bandwidth)"
        elif dof < MIN_BANDWIDTH_DF:
            at_bw = f"not used: {dof} df, under {MIN_BANDWIDTH_DF} (calibrate with more runs)"
        else:
            n = lv["bandwidth_fits"]
            at_bw = f"{_pct(fitted)} ({n} comparison{'' if n == 1 else 's'} fitted, {dof} df)"
        row["at the copy bandwidth measured"] = at_bw
        if two:
            shift = lv.get("state_shift_log")
            row["between the two states"] = f"×{math.exp(shift):.2f}" if shift else "N/A (not seen in both)"
        row |= {
            "per-round sd": f"{100 * lv['round_sd_log']:.2f}%",
            "runs": str(lv["runs"]),
            "processes for ±2% / ±5% / ±8%": " / ".join(str(need.get(k) or ">16") for k in ("2.0", "5.0", "8.0")),
        }
        rows.append(row)
    return rows


def recommended_processes(doc: dict[str, Any] | None, half_width_pct: float = 5.0) -> tuple[int | None, str]:
    """The processes per run the calibration recommends for a rerun half-width of ``half_width_pct`` at every
    calibrated level (the most any level needs), and a sentence on it; None when some level needs more than
    16 or there is no calibration."""
    levels = (doc or {}).get("levels") or {}
    if not levels:
        return None, "no calibration of this machine: calibrate it on the Hardware page first"
    need = {name: (lv.get("processes_for") or {}).get(str(float(half_width_pct))) for name, lv in levels.items()}
    over = sorted(name for name, n in need.items() if n is None)
    if over:
        return None, (
            f"±{half_width_pct:g}% needs more than 16 processes at {', '.join(over)} on this machine (its runs move "
            "more than rounds can average out): keep the processes low and read the rerun intervals instead"
        )
    n = max(need.values())
    per = ", ".join(f"{k} {v}" for k, v in sorted(need.items()))
    return n, f"{n} process(es) per run for ±{half_width_pct:g}% at every level ({per}), from {doc['source']}"


def states_line(doc: dict[str, Any]) -> str:
    """A sentence on the memory states the calibration saw (the copy bandwidth probed around each group)."""
    states = (doc or {}).get("memory_states") or []
    if not states:
        return "No memory-state probes in this calibration (made before they were taken): calibrate again to see them."
    seen = "; ".join(f"copy {s['lo_gbps']:.0f}-{s['hi_gbps']:.0f} GB/s ({s['groups']} probes)" for s in states)
    if len(states) == 1:
        return f"One memory state in the calibrated runs: {seen}."
    return (
        f"Two memory states in the calibrated runs: {seen}. Ratios are judged within the state their group was "
        "timed in; where a rerun in the other state is expected is said beside it."
    )


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    doc = store.artifact(run["id"], "calibration")
    parts = [f"<h2>Calibration of this machine (run {run['id']})</h2>"]
    if not doc:
        return [*parts, f"<p class='warn'>Run {run['id']} is {esc(run['status'])} and holds no calibration.</p>"]
    rows = level_rows(doc)
    spec = run["spec"]
    parts.append(
        f"<p>{esc(spec.get('runs'))} runs of the same small sweep in fresh processes, {esc(spec.get('spread_s'))} s "
        "apart: the spread of their ratios beyond what each run's own interval explains is what a rerun adds. "
        "Later runs on this machine state a rerun interval from it. Each comparison it timed is also fitted on the "
        "copy bandwidth its group was probed at (within each memory state): a rerun of that comparison is then "
        "held at the bandwidth it measures, with the fit's own error.</p>"
    )
    parts.append(f"<p>{esc(states_line(doc))}</p>")
    if rows:
        parts.append(table(rows, [(k, k) for k in rows[0]]))
    return parts
