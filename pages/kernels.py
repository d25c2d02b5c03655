"""Kernels: what one call launches, per point or side by side."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._shared import open_store, run_label
from profilers.catalog import label
from profilers.report import plots
from profilers.report.labels import na

st.title("Kernels")

with open_store() as store:
    by_run = {r["id"]: r for r in store.list_runs()}
    run_ids = store.traced_run_ids()
    if not run_ids:
        st.info(
            "No kernel breakdowns yet. Start a sweep with **Record kernels** on the Run page "
            "(or `python -m profilers run --trace`)."
        )
        st.stop()
    rid = st.selectbox("Run", run_ids, format_func=lambda i: run_label(by_run[i]))
    pts = [p for p in store.points(rid) if p.get("kernels_per_call") is not None]


def point_name(p: dict) -> str:
    return f"{label(p['variant'], p['impl'])} · {p['dtype']} · {p['tokens']}×{p['hidden']} · {p['mode']}"


names = [point_name(p) for p in pts]
defaults = names[:2]
chosen = st.multiselect("Points (one, or several side by side)", names, default=defaults)
sel = [p for p in pts if point_name(p) in chosen]
if not sel:
    st.info("Pick a point.")
    st.stop()

st.plotly_chart(plots.kernels([(point_name(p), p["extra"]["kernels"]) for p in sel]), width="stretch")

for p in sel:
    k = p["extra"]["kernels"]
    with st.container(border=True):
        st.markdown(f"**{point_name(p)}**")
        c = st.columns(5)
        c[0].metric(f"{k['unit']} per call", f"{k['kernels_per_call']:g}")
        c[1].metric(
            "memsets / memcpys per call",
            na(k.get("memops_per_call"), "{:g}"),
            help="copies and fills the call launches, counted apart from compute kernels",
        )
        c[2].metric("kernel time per call", f"{k['kernel_us_per_call']:,.1f} µs")
        c[3].metric("p50 (un-profiled)", na(p["p50_us"], "{:,.1f} µs"))
        c[4].metric(
            "launch overhead",
            na(k.get("launch_overhead_pct"), "{:.0f}%"),
            help="the share of a warm back-to-back loop in which no kernel of the call ran "
            "(1 − kernel time ÷ loop time).",
        )
        if k.get("launch_overhead_note"):
            st.caption(f"Launch overhead N/A: {k['launch_overhead_note']}.")
        if k["unit"] == "aten ops":
            st.caption(
                "On CPU the breakdown lists the outermost aten ops with their own CPU time, dispatch included "
                "and under the profiler, so it can exceed the un-profiled p50; a compiled call is one graph."
            )
        st.dataframe(
            [
                {"kernel": x["name"], "calls per call": x["calls_per_call"], "µs per call": round(x["us_per_call"], 2)}
                for x in k["kernels"]
            ],
            hide_index=True,
            width="stretch",
        )
        path = p.get("trace_path")
        if path and Path(path).is_file():
            st.download_button(
                "Download Chrome trace (open in ui.perfetto.dev)",
                Path(path).read_bytes(),
                file_name=Path(path).name,
                mime="application/json",
                key=f"trace-{p['id']}",
            )
        elif path:
            st.caption(f"Trace file no longer present: {path}")
        else:
            st.caption(
                "No trace saved for this point: turn on **Keep Chrome traces** on the Run page "
                "(or `--save-traces` on the command line) to keep one."
            )
