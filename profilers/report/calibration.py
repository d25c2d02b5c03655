"""A calibration run's part of a report: how far reruns move on the machine, per working-set level."""

from __future__ import annotations

from typing import Any

from ..store import Store
from .html import esc, table


def level_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One row per working-set level: the between-run and per-round spread, and the processes a target needs
    (the Hardware page's table and the report's)."""
    rows = []
    for name, lv in sorted((doc or {}).get("levels", {}).items()):
        need = lv.get("processes_for") or {}
        rows.append(
            {
                "level": name,
                # the spread of the runs less what their own errors explain, clamped at 0: no more than they explain
                "between-run sd": f"{100 * lv['between_sd_log']:.2f}%"
                if lv["between_sd_log"] > 0
                else "none beyond the runs' own error",
                "per-round sd": f"{100 * lv['round_sd_log']:.2f}%",
                "runs": str(lv["runs"]),
                "processes for ±2% / ±5% / ±8%": " / ".join(str(need.get(k) or ">16") for k in ("2.0", "5.0", "8.0")),
            }
        )
    return rows


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
        "Later runs on this machine state a rerun interval from it.</p>"
    )
    if rows:
        parts.append(table(rows, [(k, k) for k in rows[0]]))
    return parts
