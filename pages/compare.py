"""Compare: one spec on several machines side by side, or regressions against a baseline run."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from pages._shared import margin_input, open_store, run_label, runs_or_welcome
from profilers.analysis import compare, method, rerun
from profilers.catalog import KERNEL_MARGIN_PCT
from profilers.report import plots
from profilers.report.labels import COLUMNS, number, percent

FLAG_STYLE = {k: f"color: {v}; font-weight: 600" for k, v in plots.FLAG_COLORS.items()}


def _table_row(r: compare.Row) -> dict:
    """A typed row as table data; the labels go on at the table."""
    return {
        "variant": r.variant,
        "impl": r.impl,
        "dtype": r.dtype,
        "shape": f"{r.tokens}×{r.hidden}",
        "mode": r.mode,
        "base_p50_us": r.base["p50_us"],
        "p50_us": r.other["p50_us"],
        "diff_pct": r.diff_pct,
        "band_pct": r.band_pct,
        "flag": r.flag,
        "status": r.other["status"],
        "roofline_pct": r.other.get("roofline_pct"),
        "energy_mj_per_call": r.other.get("energy_mj_per_call"),
    }


def _between(run: dict) -> tuple[dict[str, float], str]:
    """The between-run sd of log p50 per working-set level from the calibration of ``run``'s machine (made
    under its torch), and the sentence on it."""
    with open_store() as store:
        doc, note = rerun.calibration_for(store, run.get("machine") or {}, run.get("versions") or {})
    return compare.p50_between_sd(doc), note


def _common(a: list[dict], b: list[dict]) -> int:
    keys = {tuple(p[k] for k in compare.KEY) for p in a if p.get("p50_us")}
    return sum(1 for p in b if p.get("p50_us") and tuple(p[k] for k in compare.KEY) in keys)


def _run_label(r: dict, machines: dict[int, str]) -> str:
    """A run as the pickers name it: with its machine, so runs of several machines in one store are told apart."""
    return f"{run_label(r)} · {machines[r['id']]}"


def _sweep_label(uid: str, members: list[dict]) -> str:
    started = min(r["created_at"] for r in members)[:16].replace("T", " ")
    hosts = sorted({(r.get("machine") or {}).get("hostname") or "?" for r in members})
    return f"cluster sweep {uid[:8]} · {len(members)} device(s) on {', '.join(hosts)} · {started}"


st.title("Compare runs")
st.caption(
    "Points match on variant, implementation, dtype, shape and mode. On the same machine, measured the same way, "
    "each change is decided against the equivalence margin: a point whose whole 95% interval lies beyond +margin "
    "is a regression (red), beyond −margin faster (green), inside ±margin equivalent (grey); an interval that "
    "crosses the margin is undecided (purple). Runs measured differently (budget, rounds, timer, threads, cache "
    "state, allocator, torch) or on other machines are shown side by side, never flagged."
)

with open_store() as store:
    runs = runs_or_welcome(store, "Nothing to compare yet: measure or import runs first.", "quick-compare")
    if len(runs) < 2:
        st.info("Comparing needs two runs: measure another, or import one on the Runs page.")
        st.stop()
    # which machines: every one in the store by default, a few of them, or the devices of one cluster sweep
    machine_of = compare.machine_labels(runs)
    machines = sorted(set(machine_of.values()))
    sweeps = compare.fleets(runs)
    left, right = st.columns(2)
    picked = left.multiselect(
        "Machines",
        machines,
        placeholder=f"every machine ({len(machines)})",
        help="Only runs measured on these machines (host and device) are offered below.",
    )
    sweep = None
    if sweeps:
        sweep = right.selectbox(
            "Devices of a cluster sweep",
            [None, *sweeps],
            format_func=lambda u: "none: pick runs below" if u is None else _sweep_label(u, sweeps[u]),
            help="A sweep over a Ray cluster stores one run per device: its first device is the baseline, "
            "every other device is compared with it.",
        )
    if sweep is not None:
        runs = sweeps[sweep]
    elif picked:
        runs = [r for r in runs if machine_of[r["id"]] in picked]
    if len(runs) < 2:
        st.info("Comparing needs two runs: these machines hold fewer; pick more machines.")
        st.stop()
    scope = hashlib.sha1(repr((sweep, sorted(picked))).encode()).hexdigest()[:8]  # new choices, new defaults
    by_id = {r["id"]: r for r in runs}
    ids = list(by_id)
    points = {r["id"]: store.points(r["id"]) for r in runs[:40]}  # the newest 40 runs are candidates
    newest = runs[0]
    if sweep is not None:  # the cluster sweep's first device against every other
        default_base, default_others = ids[0], ids[1:]
    else:  # the newest run against the latest earlier run it shares the most points with
        earlier = [r for r in runs[1:] if r["id"] in points]
        scored = sorted(earlier, key=lambda r: (_common(points[r["id"]], points[newest["id"]]), r["id"]), reverse=True)
        default_base = scored[0]["id"] if scored else runs[1]["id"]
        default_others = [newest["id"]] if newest["id"] != default_base else []
    base_id = st.selectbox(
        "Baseline run",
        ids,
        index=ids.index(default_base),
        format_func=lambda i: _run_label(by_id[i], machine_of),
        key=f"compare-base-{scope}",
    )
    candidates = [i for i in ids if i != base_id]
    others = st.multiselect(
        "Compared with",
        candidates,
        default=[i for i in default_others if i in candidates] or candidates[:1],
        format_func=lambda i: _run_label(by_id[i], machine_of),
        key=f"compare-others-{scope}",
    )
    base_points = points.get(base_id) or store.points(base_id)
    other_points = {i: points.get(i) or store.points(i) for i in others}

if not others:
    st.info("Pick at least one run to compare with the baseline.")
    st.stop()

margin = margin_input(KERNEL_MARGIN_PCT, "a kernel's time", "margin-compare")
base = by_id[base_id]
base_spread, base_note = _between(base)  # the baseline's machine: read once, not per compared run
for oid in others:
    other = by_id[oid]
    same = compare.same_machine(base, other)
    diffs = method.differences(base, other)
    spread, cal_note = (base_spread, base_note) if same else ({}, "")
    rows = compare.match_points(
        base_points,
        other_points[oid],
        same,
        method_differs=bool(diffs),
        between=compare.level_lookup(spread),
        margin_pct=margin,
    )
    st.subheader(f"Run {oid} vs baseline run {base_id}")
    if not same:
        apart = "; ".join(compare.machine_differences(base, other)) or "their identities differ"
        st.caption(f"Different machines ({apart}): differences are shown, not flagged.")
    elif diffs:
        st.warning("Same machine, measured differently: " + "; ".join(diffs) + ". Differences are not flagged.")
    elif spread:
        st.caption(
            "Same machine, same method: regressions are flagged on each point's 95% interval widened by how far "
            f"times moved between this machine's calibrated runs ({cal_note}): a rerun meets the machine in "
            "another state, so a change within that is not called a regression."
        )
    else:
        st.caption(
            f"Same machine, same method: regressions are flagged on the runs' own 95% intervals, which cover each "
            f"run's moment only; {cal_note}, so how far a rerun moves is not known and a flag may be the machine's "
            "state."
        )
    if not rows:
        st.warning("These runs have no timed points in common (different variants, shapes, dtypes or modes).")
        continue
    flags = pd.Series([r.flag for r in rows]).value_counts()
    m = st.columns(6)
    m[0].metric("matched points", len(rows))
    m[1].metric("regressions", int(flags.get("regression", 0)))
    m[2].metric("faster", int(flags.get("faster", 0)))
    m[3].metric(f"equivalent (±{margin:g}%)", int(flags.get("equivalent", 0)))
    m[4].metric("undecided", int(flags.get("undecided", 0)))
    m[5].metric("median change", percent(pd.Series([r.diff_pct for r in rows]).median(), signed=True))
    st.plotly_chart(plots.compare_scatter(rows, f"run {base_id}", f"run {oid}"), width="stretch")
    table = pd.DataFrame([_table_row(r) for r in rows]).rename(columns=COLUMNS)
    text_cols = {COLUMNS.get(k, k) for k in ("variant", "impl", "dtype", "shape", "mode", "flag", "status")}
    formats = {c: number for c in table.columns if c not in text_cols}
    formats[COLUMNS["diff_pct"]] = lambda v: percent(v, signed=True)
    styled = table.style.map(lambda f: FLAG_STYLE.get(f, ""), subset=[COLUMNS["flag"]]).format(formats, na_rep="N/A")
    st.dataframe(styled, hide_index=True, width="stretch")
