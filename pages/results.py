"""Results: pick runs, compare two choices head to head, then the detailed charts and every point."""

from __future__ import annotations

import io
import json

import pandas as pd
import streamlit as st

from pages._shared import default_runs, open_store, remember_runs, run_label, runs_or_welcome
from profilers.analysis.method import allocator_effect, allocator_sentence, allocator_short, differences
from profilers.catalog import label
from profilers.report import plots
from profilers.report.labels import COLUMNS, HELP, POINT_TABLE, for_table, number

st.title("Results")

with open_store() as store:
    runs = runs_or_welcome(
        store, "No runs yet. Start a sweep on the Run page, or run the quick CPU sweep now.", "quick-results"
    )
    by_id = {r["id"]: r for r in runs}
    chosen = st.multiselect(
        "Runs",
        list(by_id),
        default=default_runs(runs, "results", n=0),
        format_func=lambda i: run_label(by_id[i]),
        key="runs-results",  # a keyed widget keeps the user's pick when the remembered default moves
    )
    remember_runs(chosen)
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    points = store.points_table(chosen, with_extra=True)

labels = {i: f"run {i}" + (f" ({by_id[i]['label']})" if by_id[i].get("label") else "") for i in chosen}
df = plots.points_frame(points, labels)
if df.empty:
    st.warning("These runs have no points yet.")
    st.stop()


def cpu_interval_note(runs: list[dict]) -> str:
    """What a CPU run's interval covers: one process's rounds, or processes and their rounds."""
    cpu = [r for r in runs if str(r["spec"].get("device", "cpu")).startswith("cpu")]
    single = [r for r in cpu if (r["spec"].get("processes") or 1) == 1]
    if single:
        return (
            " On a CPU the interval of a run in one process is over that process's rounds: a run in a fresh process "
            "can land outside it (benchmarks/cpu_process_spread.py measures by how much on this machine; "
            "Processes on the Run page, or --processes N, spreads a run over N processes): repeat a run before you "
            "trust a difference of a few percent."
        )
    if cpu:
        return (
            " A CPU run spread over several processes has intervals that resample the processes, then the rounds "
            "within them: they include what differs between processes, not what the machine does after the run "
            "(a cache-resident point on a shared host moves with its neighbours: repeat a run before you trust a "
            "difference of a few percent)."
        )
    return ""


def head_to_head_sentence(d: pd.DataFrame, cont: tuple[str, str], base: tuple[str, str]) -> str:
    """One sentence per facet: the range of ratios and where they are beyond the noise."""
    n = len(d)
    faster = int(((d["hi"] < 1) & d["measurable"]).sum())
    slower = int(((d["lo"] > 1) & d["measurable"]).sum())
    ties = n - faster - slower
    # where the machine was calibrated, a difference a rerun may not reproduce is said apart
    calibrated = d["rerun_lo"].notna() if "rerun_lo" in d else pd.Series(False, index=d.index)
    unsure = int((calibrated & d["measurable"] & (d["rerun_lo"] <= 1) & (d["rerun_hi"] >= 1)).sum())
    lo, hi = d["ratio"].min(), d["ratio"].max()
    span = f"{lo:.2f}×" if abs(hi - lo) < 0.005 else f"{lo:.2f}× to {hi:.2f}×"
    counts = [
        (faster, "faster beyond the noise"),
        (slower, "slower beyond the noise"),
        (ties, "no measurable difference"),
    ]
    parts = [f"{what} at {'all ' if k == n and n > 1 else ''}{k}" for k, what in counts if k]
    if unsure:
        parts.append(f"of those, {unsure} in this run only: a rerun may not agree (its rerun interval holds 1)")
    n_shapes, n_runs = d["shape"].nunique(), d["run_id"].nunique()
    where = f"{n_shapes} shape{'s' if n_shapes > 1 else ''}"
    if n_runs > 1:
        where += f" in {n_runs} runs ({n} comparisons)"
    return f"{label(*cont)} takes {span} the time of {label(*base)} over {where}: {'; '.join(parts)}."


def follow(key: str, title: str, options: list, col) -> list:
    """A filter that follows the runs chosen: values a newly chosen run brings are selected, values the
    user took out stay out."""
    state, seen = f"f-{key}", f"seen-{key}"
    previous = st.session_state.get(seen, [])
    current = st.session_state.get(state)
    keep = options if current is None else [o for o in options if o in current or o not in previous]
    st.session_state[state] = keep
    st.session_state[seen] = options
    return col.multiselect(title, options, key=state)


cols = st.columns(5)
filters = {
    "variant": follow("variant", "Variants", list(dict.fromkeys(df["variant"])), cols[0]),
    "impl": follow("impl", "Implementations", list(dict.fromkeys(df["impl"])), cols[1]),
    "dtype": follow("dtype", "dtypes", list(dict.fromkeys(df["dtype"])), cols[2]),
    "mode": follow("mode", "Modes", list(dict.fromkeys(df["mode"])), cols[3]),
    "shape": follow("shape", "Shapes", plots.shapes_in_order(df), cols[4]),
}
view = df
for key, keep in filters.items():
    view = view[view[key].isin(keep)]
if view.empty:
    st.info("No points match these filters: widen them above.")
    st.stop()
view = view.assign(extra=[json.loads(x) if isinstance(x, str) else {} for x in view["extra_json"]])

status = view["status"].value_counts()
m = st.columns(6)
m[0].metric("points", len(view))
m[1].metric("ok", int(status.get("ok", 0)), help="timed, correct within tolerance, interval within target")
m[2].metric("unstable", int(status.get("unstable", 0)), help="interval stayed wider than the target, or busy")
m[3].metric("imprecise", int(status.get("imprecise", 0)), help="past the dtype's tolerance, right in fp32")
m[4].metric("failed", int(status.get("failed", 0)), help="wrong, or an error: never timed")
m[5].metric("noisy", int(view["noisy"].fillna(False).astype(bool).sum()), help=HELP["noisy"])
busy = [e.get("busy") for e in view["extra"] if e.get("busy")]
if busy:
    st.warning(f"{len(busy)} point(s) measured while the machine was busy (drawn hollow): {busy[0]}")
subtitle = " · ".join(dict.fromkeys(s for i in chosen if (s := allocator_short(by_id[i])))) or None
effect = (
    allocator_effect([by_id[i] for i in chosen], view.to_dict("records"))
    if len({allocator_short(by_id[i]) for i in chosen} - {None}) > 1
    else []
)
if effect:
    st.info(
        "**The CPU allocator's effect** (runs of both modes, same machine and method)\n\n"
        + "\n".join(f"- {line}" for line in effect)
    )

first = by_id[chosen[0]]
measured_apart = [(i, d) for i in chosen[1:] if (d := differences(first, by_id[i]))]
if measured_apart:
    st.warning(
        "Measured differently: "
        + "; ".join(f"run {first['id']} vs run {i}: {', '.join(d)}" for i, d in measured_apart)
        + ". The ratios within each run hold; set their absolute times side by side with care (Compare says "
        "what each difference does)."
    )

tabs = st.tabs(["Head to head", "Latency", "Bandwidth", "Speedup", "Memory", "Energy"])
with tabs[0]:
    pairs = sorted({(v, i) for v, i in zip(view["variant"], view["impl"])})
    if len(pairs) < 2:
        st.info("Head to head needs two variant × implementation choices in the filtered points.")
    else:
        names = [label(*p) for p in pairs]
        default_base = pairs.index(("layernorm", "native")) if ("layernorm", "native") in pairs else 0
        default_cont = next(
            (pairs.index(p) for p in (("rmsnorm", "native"), ("rmsnorm", "compiled")) if p in pairs),
            1 if default_base == 0 else 0,
        )
        c1, c2 = st.columns(2)
        base = pairs[c1.selectbox("Baseline", range(len(pairs)), default_base, format_func=names.__getitem__)]
        cont = pairs[c2.selectbox("Contender", range(len(pairs)), default_cont, format_func=names.__getitem__)]
        fig, table = plots.head_to_head(view, base, cont, subtitle)
        if not table.empty:
            for (dtype, mode), d in table.groupby(["dtype", "mode"], sort=False):
                st.markdown(f"**{dtype} {mode}**: {head_to_head_sentence(d, cont, base)}")
        st.plotly_chart(fig, width="stretch")
        st.caption(
            "Each dot is the median of per-round ratios when both were timed in the same interleaved rounds; "
            "the bar is its 95% bootstrap interval, often narrower than the dot (a run taken without rounds "
            "compares p20–p80 bands instead). Hover a dot for its method and for where a rerun is expected: "
            "from the machine's calibration (`profilers calibrate`, or the Hardware page) when the run had one, "
            "else if chance is all that differs (the interval about √2 wider, since a rerun has its own error). "
            "Green: faster beyond the noise; "
            "red: slower; grey: a tie." + cpu_interval_note([by_id[i] for i in chosen])
        )
with tabs[1]:
    st.plotly_chart(plots.latency(view, "tokens", subtitle), width="stretch")
    if view["hidden"].nunique() > 1:
        st.plotly_chart(plots.latency(view, "hidden", subtitle), width="stretch")
    for s in dict.fromkeys(s for i in chosen if (s := allocator_sentence(by_id[i]))):
        st.caption(s)
    st.caption(
        f"Colour: variant; dash: implementation ({', '.join(f'{k}: {HELP[k]}' for k in ('eager', 'native'))}). "
        f"Bars: p20–p80 ({HELP['p20-p80']}). Hollow: noisy or unstable; diamond: imprecise."
    )
with tabs[2]:
    ladders = {i: (by_id[i].get("extra") or {}).get("ladder") for i in chosen}
    st.plotly_chart(
        plots.bandwidth(view, ladders, {i: by_id[i]["copy_gbps"] for i in chosen}, subtitle), width="stretch"
    )
    st.caption(
        f"Effective GB/s counts the minimum bytes each variant must move (profilers/analysis/roofline.py). "
        f"% of copy: {HELP['roofline']}, read off the ladder at the point's own working set and labelled with "
        "the cache level it fits in."
    )
with tabs[3]:
    pairs = sorted({(v, i) for v, i in zip(view["variant"], view["impl"])})
    default_base = pairs.index(("layernorm", "native")) if ("layernorm", "native") in pairs else 0
    base = st.selectbox("Baseline", pairs, index=default_base, format_func=lambda p: label(*p), key="speed-base")
    st.plotly_chart(plots.speedup_heatmap(view, base, subtitle), width="stretch")
with tabs[4]:
    st.plotly_chart(plots.memory(view, subtitle), width="stretch")
with tabs[5]:
    fig = plots.energy(view, subtitle)
    if fig is None:
        reasons = sorted(set(view["energy_note"].dropna()))
        st.info("Energy was not measured in these points. " + (" · ".join(reasons) if reasons else ""))
    else:
        st.plotly_chart(fig, width="stretch")

not_timed = view[view["status"].isin(["failed", "skipped"])]
if len(not_timed):
    with st.expander(f"{len(not_timed)} points not timed (failed or skipped) and why"):
        st.dataframe(
            not_timed[["name", "dtype", "mode", "shape", "status", "error"]].rename(columns=COLUMNS),
            hide_index=True,
            width="stretch",
        )
flagged = view[view["status"].isin(["imprecise", "unstable"])]
if len(flagged):
    with st.expander(
        f"{len(flagged)} point{'' if len(flagged) == 1 else 's'} timed but flagged (imprecise or unstable) and why"
    ):
        why = [
            g if s == "imprecise" else e for s, g, e in zip(flagged["status"], flagged["gate_note"], flagged["error"])
        ]
        st.dataframe(
            flagged[["name", "dtype", "mode", "shape", "status"]].assign(why=why).rename(columns=COLUMNS),
            hide_index=True,
            width="stretch",
        )

launch_bound = view[[bool(e.get("launch_bound")) for e in view["extra"]]]
if len(launch_bound):
    with st.expander(
        f"{len(launch_bound)} point{'' if len(launch_bound) == 1 else 's'} launch-bound on this host: the CPU takes "
        "longer to launch a call than the GPU to run it"
    ):
        st.caption(
            "Times are the GPU's: each call was queued behind a spin kernel. "
            "In a model step the GPU runs the rest of the step while the host launches, so the GPU time is what the "
            "norm costs there; a call alone, or a model step that is itself launch-bound, pays the launch. "
            "CUDA graphs (--cuda-graph) or torch.compile's cudagraph mode remove launches."
        )
        st.dataframe(
            launch_bound[["name", "dtype", "mode", "shape"]]
            .assign(
                launch_us=[e.get("dispatch_us") for e in launch_bound["extra"]],
                p50_us=launch_bound["p50_us"],
            )
            .rename(columns={**COLUMNS, "launch_us": "launch (µs, host)"}),
            hide_index=True,
            width="stretch",
            column_config={
                "launch (µs, host)": st.column_config.NumberColumn(format="%.0f"),
                COLUMNS.get("p50_us", "p50_us"): st.column_config.NumberColumn(format="%.1f"),
            },
        )

st.subheader("All points")
table = view[list(POINT_TABLE)].copy()
table["peak_bytes"] = table["peak_bytes"].map(lambda v: for_table("peak_bytes", v))
for col in ("p20_us", "p50_us", "p80_us", "gbps", "roofline_pct", "compile_s", "energy_mj_per_call"):
    table[col] = table[col].map(lambda v: float(number(v).replace(",", "")) if pd.notna(v) else v)
table = table.rename(columns=COLUMNS)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    placeholder="N/A",
    column_config={
        **{
            COLUMNS[c]: st.column_config.NumberColumn(format="localized")
            for c in (
                "tokens",
                "hidden",
                "p20_us",
                "p50_us",
                "p80_us",
                "gbps",
                "roofline_pct",
                "peak_bytes",
                "compile_s",
                "energy_mj_per_call",
                "energy_mean_power_w",
                "kernels_per_call",
            )
        },
        COLUMNS["max_rel_err"]: st.column_config.NumberColumn(format="%.2e"),
    },
)

d1, d2, _ = st.columns([1, 1, 4])
export = view.drop(columns=["name", "series", "facet", "run_name", "shape_order", "extra"], errors="ignore")
d1.download_button("Download CSV", export.to_csv(index=False), file_name="normscope-points.csv", mime="text/csv")
parquet = io.BytesIO()
export.to_parquet(parquet, index=False)
d2.download_button(
    "Download Parquet", parquet.getvalue(), file_name="normscope-points.parquet", mime="application/octet-stream"
)
