"""Figure builders shared by the dashboard and the report: rows in, plotly figures out.

Pure functions of their inputs: no store access, no Streamlit. Noisy points are
drawn hollow and failed points are drawn as red crosses with their error in the
hover text: nothing measured is hidden, nothing unmeasured is drawn as a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..analysis.compare import Row
from ..catalog import label

MAX_SERIES = 60
PALETTE = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#9333ea",
    "#ea580c",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
)
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 110},
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0},
    "hoverlabel": {"namelength": -1},
}


def points_frame(
    points: Iterable[dict[str, Any]] | pd.DataFrame, run_labels: dict[int, str] | None = None
) -> pd.DataFrame:
    """One row per point with a ``series`` name (variant impl dtype mode, plus the run if several)."""
    df = points.copy() if isinstance(points, pd.DataFrame) else pd.DataFrame(list(points))
    if df.empty:
        return df
    df["name"] = [label(v, i) for v, i in zip(df["variant"], df["impl"])]
    df["shape"] = df["tokens"].astype(str) + "×" + df["hidden"].astype(str)
    multi_run = df["run_id"].nunique() > 1
    series = df["name"] + " · " + df["dtype"] + " · " + df["mode"]
    if multi_run:
        labels = run_labels or {}
        series = series + " · " + df["run_id"].map(lambda r: labels.get(r, f"run {r}"))
    df["series"] = series
    return df


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **LAYOUT)
    return fig


def _series(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["series"]))[:MAX_SERIES]


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _by_other_axis(df: pd.DataFrame, x: str) -> pd.DataFrame:
    """Plotting against one shape axis, points that differ in the other one get their own line."""
    other = "hidden" if x == "tokens" else "tokens"
    if df.empty or df[other].nunique() <= 1:
        return df
    out = df.copy()
    out["series"] = out["series"] + " · " + ("h=" if other == "hidden" else "t=") + out[other].astype(str)
    return out


def _per_series(df: pd.DataFrame, sort: str, trace: Callable[[int, str, pd.DataFrame], dict[str, Any]]) -> list:
    """One trace dict per series (capped at MAX_SERIES); the figure is built once from them, which is
    several times faster than adding validated trace objects one by one."""
    keep = _series(df)
    groups = dict(list(df[df["series"].isin(keep)].groupby("series", sort=False)))
    return [trace(i, s, groups[s].sort_values(sort)) for i, s in enumerate(keep) if s in groups]


def latency(df: pd.DataFrame, x: str = "tokens") -> go.Figure:
    """p50 against tokens or hidden (log axes), the p20–p80 band as error bars."""
    title = f"p50 latency vs {x} (bars: p20–p80)"
    if df.empty:
        return _empty(title, "no points")
    df = _by_other_axis(df, x)
    ok = df[df["status"] == "ok"]

    def trace(i: int, s: str, d: pd.DataFrame) -> dict[str, Any]:
        return {
            "type": "scatter",
            "x": d[x].tolist(),
            "y": d["p50_us"].tolist(),
            "name": s,
            "mode": "lines+markers",
            "line": {"color": _color(i)},
            "marker": {"size": 8, "symbol": ["circle-open" if n else "circle" for n in d["noisy"].fillna(False)]},
            "error_y": {
                "type": "data",
                "symmetric": False,
                "array": (d["p80_us"] - d["p50_us"]).tolist(),
                "arrayminus": (d["p50_us"] - d["p20_us"]).tolist(),
                "thickness": 1,
            },
            "customdata": d[["shape", "n_samples", "iqr_us"]].values.tolist(),
            "hovertemplate": "%{fullData.name}<br>%{customdata[0]}: p50 %{y:,.1f} µs"
            "<br>IQR %{customdata[2]:,.1f} µs over %{customdata[1]} samples<extra></extra>",
        }

    traces = _per_series(ok, x, trace)
    failed = df[df["status"] == "failed"]
    if not failed.empty:
        # on a hidden 0-1 axis along the bottom: a failed point has no time, so it gets no µs value
        traces.append(
            {
                "type": "scatter",
                "yaxis": "y2",
                "x": failed[x].tolist(),
                "y": [0.03] * len(failed),
                "name": "failed (not timed)",
                "mode": "markers",
                "marker": {"symbol": "x", "size": 10, "color": "#dc2626"},
                "text": (failed["series"] + ": " + failed["error"].fillna("")).tolist(),
                "hovertemplate": "%{text}<extra></extra>",
            }
        )
    fig = go.Figure(data=traces)
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="µs per call (log)", **LAYOUT)
    if not failed.empty:
        fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    fig.update_xaxes(type="log", tickvals=sorted(df[x].unique().tolist()))
    fig.update_yaxes(type="log", dtick=1)
    return fig


def bandwidth(df: pd.DataFrame, copy_gbps: dict[int, float | None]) -> go.Figure:
    """Achieved GB/s from the bytes model, against the copy bandwidth measured in the same run."""
    title = "Achieved bandwidth vs the measured copy roofline"
    ok = df[(df["status"] == "ok")] if not df.empty else df
    if ok.empty or ok["gbps"].isna().all():
        return _empty(title, "no timed points")
    ok = _by_other_axis(ok, "tokens")

    def trace(i: int, s: str, d: pd.DataFrame) -> dict[str, Any]:
        return {
            "type": "scatter",
            "x": d["tokens"].tolist(),
            "y": d["gbps"].tolist(),
            "name": s,
            "mode": "lines+markers",
            "line": {"color": _color(i)},
            "customdata": d[["shape", "roofline_pct"]].values.tolist(),
            "hovertemplate": "%{fullData.name}<br>%{customdata[0]}: %{y:,.0f} GB/s"
            " (%{customdata[1]:.0f}% of copy)<extra></extra>",
        }

    fig = go.Figure(data=_per_series(ok, "tokens", trace))
    lines = [(run_id, gbps) for run_id, gbps in sorted(copy_gbps.items()) if gbps]
    fig.update_layout(
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": g,
                "y1": g,
                "line": {"dash": "dash", "color": "#111827", "width": 1},
            }
            for _, g in lines
        ],
        annotations=[
            {
                "xref": "paper",
                "x": 0,
                "y": g,
                "yanchor": "bottom",
                "xanchor": "left",
                "showarrow": False,
                "text": f"copy roofline, run {r}: {g:,.0f} GB/s",
            }
            for r, g in lines
        ],
    )
    fig.update_layout(title=title, xaxis_title="tokens", yaxis_title="GB/s (minimum bytes ÷ p50)", **LAYOUT)
    fig.update_xaxes(type="log", tickvals=sorted(ok["tokens"].unique().tolist()))
    return fig


def speedup_matrix(df: pd.DataFrame, baseline: tuple[str, str] = ("layernorm", "native")) -> pd.DataFrame:
    """baseline p50 ÷ p50 per (variant impl) × shape, within each dtype and mode; >1 is faster."""
    ok = df[df["status"] == "ok"] if not df.empty else df
    if ok.empty:
        return pd.DataFrame()
    base = ok[(ok["variant"] == baseline[0]) & (ok["impl"] == baseline[1])]
    if base.empty:
        return pd.DataFrame()
    keys = ["run_id", "dtype", "mode", "tokens", "hidden"]
    merged = ok.merge(base[[*keys, "p50_us"]].rename(columns={"p50_us": "base_us"}), on=keys)
    merged["speedup"] = merged["base_us"] / merged["p50_us"]
    merged["row"] = merged["name"] + " · " + merged["dtype"] + " · " + merged["mode"]
    return merged.pivot_table(index="row", columns="shape", values="speedup", aggfunc="median")


def speedup_heatmap(df: pd.DataFrame, baseline: tuple[str, str] = ("layernorm", "native")) -> go.Figure:
    title = f"Speedup over {label(*baseline)} (× faster; same dtype, mode and run)"
    m = speedup_matrix(df, baseline)
    if m.empty:
        return _empty(title, f"no {label(*baseline)} points to compare against: include it in the sweep")
    text = [[f"{v:.2f}×" if pd.notna(v) else "N/A" for v in row] for row in m.values]
    fig = go.Figure(
        go.Heatmap(
            z=m.values,
            x=list(m.columns),
            y=list(m.index),
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=1.0,
            colorbar={"title": "×"},
            hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="shape (tokens×hidden)",
        height=max(320, 28 * len(m.index) + 160),
        **{**LAYOUT, "margin": {"l": 260, "r": 20, "t": 50, "b": 110}},
    )
    return fig


def memory(df: pd.DataFrame) -> go.Figure:
    title = "Peak memory above baseline during one call"
    ok = df[(df["status"] == "ok") & df["peak_bytes"].notna()] if not df.empty else df
    if ok.empty:
        return _empty(title, "no memory readings")

    def trace(i: int, s: str, d: pd.DataFrame) -> dict[str, Any]:
        return {
            "type": "bar",
            "x": d["shape"].tolist(),
            "y": (d["peak_bytes"] / 2**20).tolist(),
            "name": s,
            "marker": {"color": _color(i)},
            "hovertemplate": "%{fullData.name}<br>%{x}: %{y:,.2f} MiB<extra></extra>",
        }

    fig = go.Figure(data=_per_series(ok, "tokens", trace))
    fig.update_layout(title=title, barmode="group", xaxis_title="shape", yaxis_title="MiB", **LAYOUT)
    return fig


def energy(df: pd.DataFrame) -> go.Figure | None:
    """Energy per million tokens with mean power; None when nothing was measured."""
    if df.empty or "energy_j_per_mtok" not in df or df["energy_j_per_mtok"].isna().all():
        return None
    ok = df[df["energy_j_per_mtok"].notna()]

    def trace(i: int, s: str, d: pd.DataFrame) -> dict[str, Any]:
        return {
            "type": "bar",
            "x": d["shape"].tolist(),
            "y": d["energy_j_per_mtok"].tolist(),
            "name": s,
            "marker": {"color": _color(i)},
            "error_y": {"type": "data", "array": (d["energy_j_per_mtok"] * d["energy_spread_pct"] / 200).tolist()},
            "customdata": d[["energy_mean_power_w", "energy_mj_per_call", "energy_method"]].values.tolist(),
            "hovertemplate": "%{fullData.name}<br>%{x}: %{y:,.2f} J per M tokens<br>%{customdata[1]:,.2f} mJ/call"
            " at %{customdata[0]:,.0f} W (%{customdata[2]})<extra></extra>",
        }

    fig = go.Figure(data=_per_series(ok, "tokens", trace))
    fig.update_layout(
        title="Energy per million tokens (bars: spread over repeats)",
        barmode="group",
        xaxis_title="shape",
        yaxis_title="J per million tokens",
        **LAYOUT,
    )
    return fig


def kernels(breakdowns: Sequence[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Stacked bars: time per norm call of each kernel, one bar per point."""
    title = "What one call launches (time per call by kernel)"
    if not breakdowns:
        return _empty(title, "no kernel breakdowns: run with --trace")
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
        return _empty(title, "no samples")
    fig = go.Figure()
    for i, k in enumerate(present):
        fig.add_trace(go.Scatter(x=series["t_s"], y=series[k], name=k, mode="lines", line={"color": _color(i)}))
    fig.update_layout(title=title, xaxis_title="s", height=300, **LAYOUT)
    return fig


FLAG_COLORS = {"regression": "#dc2626", "faster": "#16a34a", "within noise": "#6b7280", "machine difference": "#2563eb"}


def compare_scatter(rows: Sequence[Row], base_name: str, other_name: str) -> go.Figure:
    """Each matched point's p50 here against the baseline's (log-log); off the diagonal is a change."""
    title = f"p50: {other_name} vs {base_name} (diagonal = no change)"
    if not rows:
        return _empty(title, "no points in common")
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
