"""Figure builders shared by the dashboard and the report: rows in, plotly figures out.

Pure functions of their inputs: no store access, no Streamlit. One look for every
chart: a colour per variant and a dash per implementation, facets per dtype and
mode instead of one crowded plot, legends beside the plot, shapes in numeric
order, counts with thousands separators. Noisy and unstable points are drawn
hollow, imprecise ones as diamonds; failed and skipped points are drawn as red
crosses on a strip labelled "not timed" with their reason on hover: nothing
measured is hidden, nothing unmeasured is drawn as a value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis import rerun as rerun_
from ..analysis.compare import Row
from ..analysis.noise import ratio_between
from ..catalog import IMPLS, VARIANTS, label
from .figures import LAYOUT, PALETTE, empty
from .labels import tick

MAX_SERIES = 60
VARIANT_COLORS = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(VARIANTS)}
IMPL_DASH = dict(zip(IMPLS, ("dot", "solid", "dash", "dashdot", "longdash", "longdashdot"), strict=True))
RUN_SYMBOLS = ("circle", "square", "triangle-up", "star", "hexagon", "cross")
TIMED = ("ok", "imprecise", "unstable")


def points_frame(
    points: Iterable[dict[str, Any]] | pd.DataFrame, run_labels: dict[int, str] | None = None
) -> pd.DataFrame:
    """One row per point: display name, shape, a numeric shape order, facet and series names."""
    df = points.copy() if isinstance(points, pd.DataFrame) else pd.DataFrame(list(points))
    if df.empty:
        return df
    df["name"] = [label(v, i) for v, i in zip(df["variant"], df["impl"])]
    df["shape"] = df["tokens"].astype(str) + "×" + df["hidden"].astype(str)
    df["shape_order"] = df["tokens"].astype("int64") * (1 << 21) + df["hidden"].astype("int64")
    df["facet"] = df["dtype"] + " · " + df["mode"]
    labels = run_labels or {}
    df["run_name"] = df["run_id"].map(lambda r: labels.get(r, f"run {r}"))
    multi_run = df["run_id"].nunique() > 1
    df["series"] = df["name"] + (" · " + df["run_name"] if multi_run else "")
    return df


def shapes_in_order(df: pd.DataFrame) -> list[str]:
    """Shape labels sorted by tokens, then hidden (numerically, not as text)."""
    if df.empty:
        return []
    return list(df.sort_values("shape_order").drop_duplicates("shape")["shape"])


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _title(text: str, subtitle: str | None) -> dict[str, Any]:
    return {"text": text, "subtitle": {"text": subtitle}} if subtitle else {"text": text}


def _with_cap(subtitle: str | None, total: int, drawn: int) -> str | None:
    """The subtitle, plus a note when a chart drew fewer series than it was given (never a silent cut)."""
    if total <= drawn:
        return subtitle
    note = f"{drawn} of {total} series drawn: narrow the filters to see the rest"
    return f"{subtitle} · {note}" if subtitle else note


def _margin(subtitle: str | None) -> dict[str, Any]:
    """LAYOUT with room above the plot for a subtitle."""
    return {**LAYOUT, "margin": {**LAYOUT["margin"], "t": 100}} if subtitle else LAYOUT


def _facets(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Facet columns (dtypes) and rows (modes) present, in catalogue order."""
    order = {"fwd": 0, "bwd": 1, "fwdbwd": 2}
    dtypes = sorted(df["dtype"].unique(), key=["float32", "bfloat16", "float16"].index)
    modes = sorted(df["mode"].unique(), key=lambda m: order.get(m, 9))
    return dtypes, modes


def _grid(dtypes: list[str], modes: list[str], shared_y: bool = False) -> go.Figure:
    return make_subplots(
        rows=len(modes),
        cols=len(dtypes),
        subplot_titles=[f"{d} · {m}" for m in modes for d in dtypes],
        shared_yaxes=shared_y,
        horizontal_spacing=0.08,
        vertical_spacing=0.14 if len(modes) > 1 else 0.1,
    )


def _axis_ref(fig: go.Figure, row: int, col: int) -> tuple[str, str]:
    sp = fig.get_subplot(row, col)
    return sp.xaxis.plotly_name.replace("axis", ""), sp.yaxis.plotly_name.replace("axis", "")


def _marker(statuses: Iterable[str], noisy: Iterable[Any], run_symbol: str) -> dict[str, Any]:
    symbols = []
    for st, n in zip(statuses, noisy):
        base = "diamond" if st == "imprecise" else run_symbol
        noisy_point = (isinstance(n, bool) and n) or (isinstance(n, (int, float)) and n == n and bool(n))
        symbols.append(base + ("-open" if st == "unstable" or noisy_point else ""))
    return {"size": 8, "symbol": symbols}


def _not_timed_strip(
    fig: go.Figure, df: pd.DataFrame, x: str, cells: dict[tuple[str, str], tuple[int, int]]
) -> list[dict[str, Any]]:
    """Failed points, per facet, on a visible strip labelled 'not timed' (no time implied); unsupported (skipped)
    combinations are listed under the charts, not drawn."""
    traces = []
    shown = False
    for (dtype, mode), (row, col) in cells.items():
        bad = df[(df["status"] == "failed") & (df["dtype"] == dtype) & (df["mode"] == mode)]
        if bad.empty:
            continue
        xref, yref = _axis_ref(fig, row, col)
        strip = f"y{100 + row * 10 + col}"
        fig.update_layout(
            {
                f"yaxis{100 + row * 10 + col}": {
                    "overlaying": yref,
                    "anchor": xref,
                    "range": [0, 1],
                    "side": "right",
                    "tickvals": [0.05],
                    "ticktext": ["not timed"],
                    "tickfont": {"color": "#dc2626"},
                    "showgrid": False,
                    "zeroline": False,
                    "fixedrange": True,
                }
            }
        )
        traces.append(
            {
                "type": "scatter",
                "xaxis": xref,
                "yaxis": strip,
                "x": bad[x].tolist(),
                "y": [0.05] * len(bad),
                "name": "failed (not timed)",
                "legendgroup": "not timed",
                "showlegend": not shown,
                "mode": "markers",
                "marker": {"symbol": "x", "size": 10, "color": "#dc2626"},
                "text": (
                    bad["name"] + " " + bad["shape"] + ": " + bad["status"] + " — " + bad["error"].fillna("")
                ).tolist(),
                "hovertemplate": "%{text}<extra></extra>",
            }
        )
        shown = True
    return traces


def latency(df: pd.DataFrame, x: str = "tokens", subtitle: str | None = None) -> go.Figure:
    """p50 against tokens or hidden (log axes), p20–p80 bars; facets per dtype × mode."""
    title = f"p50 latency vs {x} (bars: p20–p80)"
    if df.empty:
        return empty(title, "no points")
    dtypes, modes = _facets(df)
    fig = _grid(dtypes, modes)
    other = "hidden" if x == "tokens" else "tokens"
    timed = df[df["status"].isin(TIMED) & df["p50_us"].notna()]
    runs = list(dict.fromkeys(df["run_id"]))
    traces: list[dict[str, Any]] = []
    seen: set[str] = set()
    drawn: set[str] = set()  # legend entries drawn, of all those ``named``
    named: set[str] = set()
    cells = {}
    for r_i, mode in enumerate(modes, start=1):
        for c_i, dtype in enumerate(dtypes, start=1):
            cells[(dtype, mode)] = (r_i, c_i)
            xref, yref = _axis_ref(fig, r_i, c_i)
            facet = timed[(timed["dtype"] == dtype) & (timed["mode"] == mode)]
            if facet.empty:
                fig.add_annotation(
                    xref=f"{xref} domain",
                    yref=f"{yref} domain",
                    x=0.5,
                    y=0.5,
                    showarrow=False,
                    text=f"no timed {dtype} {mode} points in this selection",
                    font={"color": "#6b7280"},
                )
            many = facet[other].nunique() > 1
            for (series, extra_val), group in facet.groupby(["series", other], sort=False):
                name = series + (f" · {'h' if other == 'hidden' else 't'}={tick(int(extra_val))}" if many else "")
                named.add(name)
                if len(drawn) >= MAX_SERIES and name not in drawn:
                    continue
                drawn.add(name)
                d = group.sort_values(x)
                v, impl = d["variant"].iloc[0], d["impl"].iloc[0]
                traces.append(
                    {
                        "type": "scatter",
                        "xaxis": xref,
                        "yaxis": yref,
                        "x": d[x].tolist(),
                        "y": d["p50_us"].tolist(),
                        "name": name,
                        "legendgroup": name,
                        "showlegend": name not in seen,
                        "mode": "lines+markers",
                        "line": {"color": VARIANT_COLORS.get(v, "#111827"), "dash": IMPL_DASH.get(impl, "solid")},
                        "marker": {
                            **_marker(
                                d["status"], d["noisy"], RUN_SYMBOLS[runs.index(d["run_id"].iloc[0]) % len(RUN_SYMBOLS)]
                            ),
                            "color": VARIANT_COLORS.get(v, "#111827"),
                        },
                        "error_y": {
                            "type": "data",
                            "symmetric": False,
                            "array": (d["p80_us"] - d["p50_us"]).tolist(),
                            "arrayminus": (d["p50_us"] - d["p20_us"]).tolist(),
                            "thickness": 1,
                        },
                        "customdata": d[["shape", "n_samples", "status"]].values.tolist(),
                        "hovertemplate": "%{fullData.name}<br>%{customdata[0]}: p50 %{y:,.1f} µs"
                        "<br>%{customdata[1]} samples, %{customdata[2]}<extra></extra>",
                    }
                )
                seen.add(name)
    vals = sorted(df[x].unique().tolist())
    fig.update_xaxes(type="log", tickvals=vals, ticktext=[tick(int(v)) for v in vals], title_text=x)
    fig.update_yaxes(type="log", dtick=1, title_text="µs per call (log)")  # before the strips get their axes
    traces += _not_timed_strip(fig, df, x, cells)
    fig.add_traces(traces)
    subtitle = _with_cap(subtitle, len(named), len(drawn))
    layout = {**LAYOUT, "margin": {**LAYOUT["margin"], "t": 110 if subtitle else 80}}
    fig.update_layout(title=_title(title, subtitle), height=340 * len(modes) + 140, **layout)
    return fig


def head_to_head(
    df: pd.DataFrame, baseline: tuple[str, str], contender: tuple[str, str], subtitle: str | None = None
) -> tuple[go.Figure, pd.DataFrame]:
    """contender / baseline per shape with its 95% interval, facets per dtype × mode; and the rows drawn.

    Points timed in the same interleaved rounds are compared pairwise (``noise.ratio_between``).
    """
    b_name, c_name = label(*baseline), label(*contender)
    title = f"{c_name} ÷ {b_name}: time ratio per shape (bars: 95% interval; below 1: {c_name} is faster)"
    rows = []
    timed = df[df["status"].isin(TIMED) & df["p50_us"].notna()] if not df.empty else df
    if not timed.empty:
        key = ["run_id", "dtype", "mode", "tokens", "hidden"]
        # only what the ratio reads (noise.ratio_between): a wide frame's other columns cost time per row
        needed = [
            *("variant", "impl", "device", "block", "cache_state", "p20_us", "p50_us", "p80_us", "extra", "run_name")
        ]
        cols = key + [c for c in needed if c in timed.columns]
        base = timed.loc[(timed["variant"] == baseline[0]) & (timed["impl"] == baseline[1]), cols]
        cont = timed.loc[(timed["variant"] == contender[0]) & (timed["impl"] == contender[1]), cols]
        merged = base.merge(cont, on=key, suffixes=("_b", "_c"))
        for m in merged.to_dict("records"):
            b = {k.removesuffix("_b"): v for k, v in m.items() if not k.endswith("_c")}
            c = {k.removesuffix("_c"): v for k, v in m.items() if not k.endswith("_b")}
            for p in (b, c):
                p["extra"] = p.get("extra") if isinstance(p.get("extra"), dict) else {}
            r = ratio_between(b, c)
            # where a rerun is expected: from the machine's calibration when the run had one, else what chance
            # alone would give; said for intervals over rounds, not for the older p20-p80 band rule
            again = rerun_.rerun_for(r, c)
            other = again.other if again else None
            elsewhere = f"; {other['lo']:.3f}-{other['hi']:.3f} in its other memory state" if other else ""
            rerun = (
                f"<br>a rerun on this machine: {again.lo:.3f}-{again.hi:.3f} (calibrated)" + elsewhere
                if again
                else "<br>a rerun, if chance is all that differs: {:.3f}-{:.3f}".format(*r.rerun_range)
            )
            rows.append(
                {
                    "run_id": m["run_id"],
                    "run_name": m.get("run_name_b") or f"run {m['run_id']}",
                    "dtype": m["dtype"],
                    "mode": m["mode"],
                    "tokens": int(m["tokens"]),
                    "hidden": int(m["hidden"]),
                    "shape": f"{int(m['tokens'])}×{int(m['hidden'])}",
                    "ratio": r.value,
                    "lo": r.lo,
                    "hi": r.hi,
                    "measurable": r.measurable,
                    "method": r.method,
                    "rerun": rerun if r.method != "p20-p80 band" else "",
                    # where a rerun lands in any calibrated memory state: what a decision must hold across
                    "rerun_lo": again.lo_any if again else None,
                    "rerun_hi": again.hi_any if again else None,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return empty(title, f"no shape where both {b_name} and {c_name} were timed"), table
    table["shape_order"] = table["tokens"] * (1 << 21) + table["hidden"]
    table = table.sort_values(["dtype", "mode", "shape_order"])
    dtypes, modes = _facets(table)
    fig = _grid(dtypes, modes, shared_y=True)
    traces = []
    shapes = list(table.drop_duplicates("shape")["shape"])
    runs = list(dict.fromkeys(table["run_id"]))
    named: set[str] = set()
    for r_i, mode in enumerate(modes, start=1):
        for c_i, dtype in enumerate(dtypes, start=1):
            xref, yref = _axis_ref(fig, r_i, c_i)
            cell = table[(table["dtype"] == dtype) & (table["mode"] == mode)]
            for k, run_id in enumerate(runs):
                d = cell[cell["run_id"] == run_id]
                if d.empty:
                    continue
                colors = [
                    "#6b7280" if not meas else ("#16a34a" if v < 1 else "#dc2626")
                    for v, meas in zip(d["ratio"], d["measurable"])
                ]
                name = d["run_name"].iloc[0]
                traces.append(
                    {
                        "type": "scatter",
                        "xaxis": xref,
                        "yaxis": yref,
                        "x": d["shape"].tolist(),
                        "y": d["ratio"].tolist(),
                        "mode": "markers",
                        "name": name,
                        "legendgroup": name,
                        # one entry per run, when runs share the chart: the symbol tells them apart
                        "showlegend": len(runs) > 1 and name not in named,
                        "offsetgroup": str(run_id),
                        "marker": {
                            "size": 11,
                            "color": colors,
                            "symbol": RUN_SYMBOLS[k % len(RUN_SYMBOLS)],
                            "line": {"width": 0},
                        },
                        "error_y": {
                            "type": "data",
                            "symmetric": False,
                            "array": (d["hi"] - d["ratio"]).tolist(),
                            "arrayminus": (d["ratio"] - d["lo"]).tolist(),
                            "thickness": 1.5,
                        },
                        "customdata": d[["lo", "hi", "method", "rerun"]].values.tolist(),
                        "hovertemplate": f"{name}<br>"
                        + "%{x}: ×%{y:.3f} (95% interval %{customdata[0]:.3f}-%{customdata[1]:.3f}, "
                        "%{customdata[2]})%{customdata[3]}<extra></extra>",
                    }
                )
                named.add(name)
            fig.add_hline(y=1.0, line_dash="dash", line_color="#111827", row=r_i, col=c_i)
    fig.add_traces(traces)
    if len(runs) > 1:
        fig.update_layout(scattermode="group", scattergap=0.6)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=shapes, title_text="tokens×hidden")
    # the axis always shows 1 (the tie line): how far a ratio is from it is the chart's point
    lo = min(float(table["lo"].min()), 1.0) / 1.15
    hi = max(float(table["hi"].max()), 1.0) * 1.15
    fine = (0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7, 10, 20, 50, 100)
    coarse = (0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100)
    ticks = [t for t in fine if lo <= t <= hi]
    if len(ticks) > 10:
        ticks = [t for t in coarse if lo <= t <= hi]
    fig.update_yaxes(
        type="log",
        range=[math.log10(lo), math.log10(hi)],
        tickvals=ticks,
        ticktext=[f"{t:g}×" for t in ticks],
        title_text=f"÷ {b_name}",
    )
    right = 230 if len(runs) > 1 else 40
    layout = {**LAYOUT, "margin": {"l": 70, "r": right, "t": 100 if subtitle else 70, "b": 60}}
    fig.update_layout(title=_title(title, subtitle), height=300 * len(modes) + 120, **layout)
    return fig, table


def bandwidth(
    df: pd.DataFrame,
    ladders: dict[int, dict[str, Any] | None],
    copy_gbps: dict[int, float | None],
    subtitle: str | None = None,
) -> go.Figure:
    """Effective GB/s (minimum-traffic model) at each point's working set, beside the copy ladder of its run."""
    title = "Effective GB/s (minimum-traffic model) against the copy ladder at the same working set"
    ok = df[df["status"].isin(TIMED) & df["gbps"].notna()] if not df.empty else df
    if ok.empty:
        return empty(title, "no timed points")
    ok = ok.assign(ws_mib=(ok["working_set_bytes"].fillna(ok["bytes_moved"]) / 2**20))
    traces: list[dict[str, Any]] = []
    for k, (run_id, ladder) in enumerate(sorted(ladders.items())):
        if ladder and ladder.get("rungs"):
            xs = [s / 2**20 for s, _ in ladder["rungs"]]
            ys = [g for _, g in ladder["rungs"]]
            traces.append(
                {
                    "type": "scatter",
                    "x": xs,
                    "y": ys,
                    "mode": "lines+markers",
                    "name": f"copy ladder, run {run_id} ({ladder.get('cache_state', 'warm')} cache)",
                    "line": {"color": "#111827", "dash": ("dash", "dot", "dashdot")[k % 3], "width": 2},
                    "marker": {"symbol": "line-ew-open", "size": 10},
                    "hovertemplate": "copy of %{x:,.1f} MiB: %{y:,.0f} GB/s<extra></extra>",
                }
            )
        elif copy_gbps.get(run_id):
            traces.append(
                {
                    "type": "scatter",
                    "x": [ok["ws_mib"].min(), ok["ws_mib"].max()],
                    "y": [copy_gbps[run_id]] * 2,
                    "mode": "lines",
                    "name": f"one copy probe, run {run_id} (no ladder recorded)",
                    "line": {"color": "#111827", "dash": "dash"},
                }
            )
    groups = ok.groupby(["series", "facet"], sort=False)
    drawn = 0
    for (series, _), d in groups:
        if drawn >= MAX_SERIES:
            break
        drawn += 1
        v, impl = d["variant"].iloc[0], d["impl"].iloc[0]
        name = f"{series} · {d['facet'].iloc[0]}"
        level = d["roofline_level"].fillna("?") if "roofline_level" in d else pd.Series(["?"] * len(d))
        traces.append(
            {
                "type": "scatter",
                "x": d["ws_mib"].tolist(),
                "y": d["gbps"].tolist(),
                "mode": "markers",
                "name": name,
                "marker": {
                    "color": VARIANT_COLORS.get(v, "#111827"),
                    "size": 9,
                    "symbol": {
                        "eager": "circle-open",
                        "native": "circle",
                        "compiled": "diamond",
                        "liger": "square",
                    }.get(impl, "circle"),
                },
                "customdata": list(zip(d["shape"], d["roofline_pct"].round(1), level)),
                "hovertemplate": "%{fullData.name}<br>%{customdata[0]}: %{y:,.0f} GB/s, %{customdata[1]}% of the "
                "ladder at this working set (%{customdata[2]})<extra></extra>",
            }
        )
    subtitle = _with_cap(subtitle, groups.ngroups, drawn)
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=_title(title, subtitle),
        xaxis_title="working set (MiB read + written per call, log)",
        yaxis_title="GB/s (log)",
        height=520,
        **LAYOUT,
    )
    fig.update_xaxes(type="log", dtick=1)  # decades only: log minor labels crowd each other
    fig.update_yaxes(type="log", dtick=1)
    return fig


def speedup_matrix(df: pd.DataFrame, baseline: tuple[str, str] = ("layernorm", "native")) -> pd.DataFrame:
    """baseline p50 ÷ p50 per (variant impl) × shape, within each dtype and mode; >1 is faster.
    Columns are shapes in numeric order."""
    ok = df[df["status"].isin(TIMED)] if not df.empty else df
    if ok.empty:
        return pd.DataFrame()
    base = ok[(ok["variant"] == baseline[0]) & (ok["impl"] == baseline[1])]
    if base.empty:
        return pd.DataFrame()
    keys = ["run_id", "dtype", "mode", "tokens", "hidden"]
    merged = ok.merge(base[[*keys, "p50_us"]].rename(columns={"p50_us": "base_us"}), on=keys)
    merged["speedup"] = merged["base_us"] / merged["p50_us"]
    merged["row"] = merged["name"] + " · " + merged["dtype"] + " · " + merged["mode"]
    m = merged.pivot_table(index="row", columns="shape", values="speedup", aggfunc="median")
    return m[[s for s in shapes_in_order(merged) if s in m.columns]]


def speedup_heatmap(
    df: pd.DataFrame, baseline: tuple[str, str] = ("layernorm", "native"), subtitle: str | None = None
) -> go.Figure:
    title = f"Speedup over {label(*baseline)} (× faster; same dtype, mode and run)"
    m = speedup_matrix(df, baseline)
    if m.empty:
        return empty(title, f"no {label(*baseline)} points to compare against: include it in the sweep")
    text = [[f"{v:.2f}×" if pd.notna(v) else "N/A" for v in row] for row in m.values]
    logs = [[math.log2(v) if pd.notna(v) and v > 0 else None for v in row] for row in m.values]
    span = max((abs(v) for row in logs for v in row if v is not None), default=1.0) or 1.0
    ticks = [t for t in (-4, -3, -2, -1, 0, 1, 2, 3, 4) if abs(t) <= math.ceil(span)]
    fig = go.Figure(
        go.Heatmap(
            z=logs,
            x=list(m.columns),
            y=list(m.index),
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            zmin=-span,
            zmax=span,
            colorbar={"title": "× faster", "tickvals": ticks, "ticktext": [f"{2.0**t:g}×" for t in ticks]},
            hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=_title(title, subtitle),
        xaxis_title="shape (tokens×hidden)",
        height=max(320, 28 * len(m.index) + 160),
        **{**LAYOUT, "margin": {"l": 300, "r": 40, "t": 90 if subtitle else 60, "b": 80}},
    )
    fig.update_xaxes(type="category")
    return fig


def memory(df: pd.DataFrame, subtitle: str | None = None) -> go.Figure:
    title = "Peak memory above baseline during one call"
    ok = df[df["status"].isin(TIMED) & df["peak_bytes"].notna()] if not df.empty else df
    if ok.empty:
        return empty(title, "no memory readings")
    traces: list[dict[str, Any]] = []
    total = ok.groupby(["series", "facet"], sort=False).ngroups
    for series, group in ok.groupby(["series"], sort=False):
        if len(traces) >= MAX_SERIES:
            break
        d = group.sort_values("shape_order")
        v = d["variant"].iloc[0]
        name = f"{series[0] if isinstance(series, tuple) else series}"
        for facet, f in d.groupby("facet", sort=False):
            traces.append(
                {
                    "type": "bar",
                    "x": f["shape"].tolist(),
                    "y": (f["peak_bytes"] / 2**20).tolist(),
                    "name": f"{name} · {facet}",
                    "marker": {
                        "color": VARIANT_COLORS.get(v, "#111827"),
                        "pattern": {"shape": {"eager": "/", "compiled": "x", "liger": "."}.get(d["impl"].iloc[0], "")},
                    },
                    "hovertemplate": "%{fullData.name}<br>%{x}: %{y:,.2f} MiB<extra></extra>",
                }
            )
    subtitle = _with_cap(subtitle, total, min(len(traces), MAX_SERIES))
    fig = go.Figure(data=traces[:MAX_SERIES])
    fig.update_layout(
        title=_title(title, subtitle), barmode="group", xaxis_title="shape", yaxis_title="MiB", **_margin(subtitle)
    )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=shapes_in_order(ok))
    return fig


def energy(df: pd.DataFrame, subtitle: str | None = None) -> go.Figure | None:
    """Energy per million tokens with mean power; None when nothing was measured."""
    if df.empty or "energy_j_per_mtok" not in df or df["energy_j_per_mtok"].isna().all():
        return None
    ok = df[df["energy_j_per_mtok"].notna()]
    traces = []
    for (series, facet), group in ok.groupby(["series", "facet"], sort=False):
        d = group.sort_values("shape_order")
        traces.append(
            {
                "type": "bar",
                "x": d["shape"].tolist(),
                "y": d["energy_j_per_mtok"].tolist(),
                "name": f"{series} · {facet}",
                "marker": {"color": VARIANT_COLORS.get(d["variant"].iloc[0], "#111827")},
                "error_y": {"type": "data", "array": (d["energy_j_per_mtok"] * d["energy_spread_pct"] / 200).tolist()},
                "customdata": d[["energy_mean_power_w", "energy_mj_per_call", "energy_method"]].values.tolist(),
                "hovertemplate": "%{fullData.name}<br>%{x}: %{y:,.2f} J per M tokens<br>%{customdata[1]:,.2f} mJ/call"
                " at %{customdata[0]:,.0f} W (%{customdata[2]})<extra></extra>",
            }
        )
    subtitle = _with_cap(subtitle, len(traces), min(len(traces), MAX_SERIES))
    fig = go.Figure(data=traces[:MAX_SERIES])
    fig.update_layout(
        title=_title("Energy per million tokens (bars: spread over repeats)", subtitle),
        barmode="group",
        xaxis_title="shape",
        yaxis_title="J per million tokens",
        **_margin(subtitle),
    )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=shapes_in_order(ok))
    return fig


COMPONENT_COLORS = {
    "attention": "#2563eb",
    "mlp": "#16a34a",
    "norm": "#dc2626",
    "residual": "#ca8a04",
    "other": "#9ca3af",
}


def block_components(rows: Sequence[dict[str, Any]], title: str) -> go.Figure:
    """Stacked bars: a block's time per call by component, one bar per configuration (µs, scaled to p50)."""
    if not rows:
        return empty(title, "no component breakdowns (compiled blocks are one graph and are not broken down)")
    configs = [r["config"] for r in rows]
    traces = [
        {
            "type": "bar",
            "orientation": "h",
            "y": configs,
            "x": [r.get(f"{c}_us", 0.0) for r in rows],
            "name": c,
            "marker": {"color": color},
            "customdata": [100.0 * r.get(f"{c}_us", 0.0) / r["p50_us"] for r in rows],
            "hovertemplate": f"{c}: %{{x:,.1f}} µs (%{{customdata:.1f}}% of the block)<extra></extra>",
        }
        for c, color in COMPONENT_COLORS.items()
    ]
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="µs per call (p50, split by the profiled shares)",
        height=max(280, 44 * len(rows) + 160),
        **{**LAYOUT, "margin": {"l": 330, "r": 160, "t": 60, "b": 60}},
    )
    return fig


def kernels(breakdowns: Sequence[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Stacked bars: time per norm call of each kernel, one bar per point."""
    title = "What one call launches (time per call by kernel)"
    if not breakdowns:
        return empty(title, "no kernel breakdowns: run with --trace")
    names: list[str] = []
    for _, b in breakdowns:
        for k in b["kernels"]:
            if k["name"] not in names:
                names.append(k["name"])
    fig = go.Figure()
    for i, kname in enumerate(names):
        xs, ys, calls = [], [], []
        for point_label, b in breakdowns:
            k = next((k for k in b["kernels"] if k["name"] == kname), None)
            xs.append(k["us_per_call"] if k else 0.0)
            calls.append(k["calls_per_call"] if k else 0.0)
            ys.append(point_label)
        fig.add_trace(
            go.Bar(
                x=xs,
                y=ys,
                name=kname[:60],
                orientation="h",
                marker_color=_color(i),
                customdata=calls,
                hovertemplate=f"{kname[:80]}<br>%{{x:,.1f}} µs per call, %{{customdata:g}}× per call<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="µs per norm call (profiled)",
        height=max(300, 60 * len(breakdowns) + 200),
        **{**LAYOUT, "margin": {"l": 260, "r": 20, "t": 50, "b": 110}},
    )
    return fig


def timeseries(series: dict[str, Any], keys: Sequence[str], title: str) -> go.Figure:
    """Sampled telemetry: one line per reading against seconds since the start."""
    present = [k for k in keys if series.get(k)]
    if not series.get("t_s") or not present:
        return empty(title, "no samples")
    fig = go.Figure()
    for i, k in enumerate(present):
        fig.add_trace(go.Scatter(x=series["t_s"], y=series[k], name=k, mode="lines", line={"color": _color(i)}))
    fig.update_layout(title=title, xaxis_title="s", height=300, **LAYOUT)
    return fig


FLAG_COLORS = {
    "regression": "#dc2626",
    "faster": "#16a34a",
    "equivalent": "#6b7280",
    "undecided": "#9333ea",
    "method difference": "#ca8a04",
    "machine difference": "#2563eb",
}


def compare_scatter(rows: Sequence[Row], base_name: str, other_name: str) -> go.Figure:
    """Each matched point's p50 here against the baseline's (log-log); off the diagonal is a change."""
    title = f"p50: {other_name} vs {base_name} (diagonal = no change)"
    if not rows:
        return empty(title, "no points in common")
    traces = []
    for flag, color in FLAG_COLORS.items():
        sel = [r for r in rows if r.flag == flag]
        if not sel:
            continue
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": flag,
                "marker": {"color": color, "size": 9},
                "x": [r.base["p50_us"] for r in sel],
                "y": [r.other["p50_us"] for r in sel],
                "text": [
                    f"{label(r.variant, r.impl)} {r.dtype} {r.tokens}×{r.hidden} {r.mode}: {r.diff_pct:+.1f}% "
                    f"(noise ±{r.band_pct:.1f}%)"
                    for r in sel
                ],
                "hovertemplate": "%{text}<extra></extra>",
            }
        )
    lo = min(min(r.base["p50_us"], r.other["p50_us"]) for r in rows) * 0.8
    hi = max(max(r.base["p50_us"], r.other["p50_us"]) for r in rows) * 1.25
    traces.append(
        {
            "type": "scatter",
            "mode": "lines",
            "x": [lo, hi],
            "y": [lo, hi],
            "name": "no change",
            "line": {"dash": "dot", "color": "#9ca3af"},
            "hoverinfo": "skip",
        }
    )
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=title,
        xaxis_title=f"{base_name} p50 µs (log)",
        yaxis_title=f"{other_name} p50 µs (log)",
        height=520,
        **LAYOUT,
    )
    fig.update_xaxes(type="log", dtick=1)
    fig.update_yaxes(type="log", dtick=1)
    return fig
