"""Results: pick runs, filter, compare in charts and a sortable table."""

from __future__ import annotations

import io

import streamlit as st

from pages._shared import open_store, run_label, runs_or_welcome
from profilers.report import plots
from profilers.report.labels import COLUMNS, HELP, POINT_TABLE, for_table

st.title("Results")

with open_store() as store:
    runs = runs_or_welcome(
        store, "No runs yet. Start a sweep on the Run page, or run the quick CPU sweep now.", "quick-results"
    )
    by_id = {r["id"]: r for r in runs}
    default = next((r["id"] for r in runs if r["status"] == "completed"), runs[0]["id"])
    chosen = st.multiselect("Runs", list(by_id), default=[default], format_func=lambda i: run_label(by_id[i]))
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    points = store.points_table(chosen)

labels = {i: f"run {i}" + (f" ({by_id[i]['label']})" if by_id[i].get("label") else "") for i in chosen}
df = plots.points_frame(points, labels)
if df.empty:
    st.warning("These runs have no points yet.")
    st.stop()

cols = st.columns(5)
filters = {}
for col, (key, title) in zip(
    cols,
    [("variant", "Variants"), ("impl", "Implementations"), ("dtype", "dtypes"), ("mode", "Modes"), ("shape", "Shapes")],
):
    options = list(dict.fromkeys(df[key]))
    filters[key] = col.multiselect(title, options, default=options, key=f"f-{key}")
view = df
for key, keep in filters.items():
    view = view[view[key].isin(keep)]
if view.empty:
    st.info("No points match these filters.")
    st.stop()

n_ok = int((view["status"] == "ok").sum())
n_failed = int((view["status"] == "failed").sum())
n_noisy = int(view["noisy"].fillna(False).astype(bool).sum())
m = st.columns(4)
m[0].metric("points", len(view))
m[1].metric("timed", n_ok)
m[2].metric("failed", n_failed, help="failed correctness or compile checks, or errors: never timed")
m[3].metric("noisy", n_noisy, help=HELP["noisy"])
if view["series"].nunique() > plots.MAX_SERIES:
    st.warning(f"{view['series'].nunique()} series: the charts show the first {plots.MAX_SERIES}. Narrow the filters.")

tab_lat, tab_bw, tab_speed, tab_mem, tab_energy = st.tabs(["Latency", "Bandwidth", "Speedup", "Memory", "Energy"])
with tab_lat:
    st.plotly_chart(plots.latency(view, "tokens"), width="stretch")
    if view["hidden"].nunique() > 1:
        st.plotly_chart(plots.latency(view, "hidden"), width="stretch")
with tab_bw:
    st.plotly_chart(plots.bandwidth(view, {i: by_id[i]["copy_gbps"] for i in chosen}), width="stretch")
    st.caption(
        "GB/s counts the minimum bytes each variant must move (profilers/analysis/roofline.py); above 100% of copy "
        "means the working set fits in cache."
    )
with tab_speed:
    pairs = sorted({(v, i) for v, i in zip(view["variant"], view["impl"])})
    default_base = pairs.index(("layernorm", "native")) if ("layernorm", "native") in pairs else 0
    base = st.selectbox("Baseline", pairs, index=default_base, format_func=lambda p: f"{p[0]} {p[1]}")
    st.plotly_chart(plots.speedup_heatmap(view, base), width="stretch")
with tab_mem:
    st.plotly_chart(plots.memory(view), width="stretch")
with tab_energy:
    fig = plots.energy(view)
    if fig is None:
        reasons = sorted(set(view["energy_note"].dropna()))
        st.info("Energy was not measured in these points. " + (" · ".join(reasons) if reasons else ""))
    else:
        st.plotly_chart(fig, width="stretch")

if n_failed:
    with st.expander(f"{n_failed} failed points and why"):
        failed = view[view["status"] == "failed"][["series", "shape", "error"]]
        st.dataframe(failed, hide_index=True, width="stretch", placeholder="N/A")

st.subheader("All points")
table = view[list(POINT_TABLE)].copy()
table["peak_bytes"] = table["peak_bytes"].map(lambda v: for_table("peak_bytes", v))
table = table.rename(columns=COLUMNS)
numeric = ("p20_us", "p50_us", "p80_us", "gbps", "roofline_pct", "max_rel_err", "compile_s", "energy_mj_per_call")
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    placeholder="N/A",
    column_config={COLUMNS[c]: st.column_config.NumberColumn(format="%.4g") for c in numeric},
)

d1, d2, _ = st.columns([1, 1, 4])
export = view.drop(columns=["name", "series"], errors="ignore")
d1.download_button("Download CSV", export.to_csv(index=False), file_name="normscope-points.csv", mime="text/csv")
parquet = io.BytesIO()
export.to_parquet(parquet, index=False)
d2.download_button(
    "Download Parquet", parquet.getvalue(), file_name="normscope-points.parquet", mime="application/octet-stream"
)
