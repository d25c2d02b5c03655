"""Figures of the drift monitor, shared by the Drift page and the report: results in, plotly figures out.

Scores are standardized (the held-out in-distribution windows have mean 0, spread 1 for
each component); thresholds are drawn beside them, and the calibrated false-alarm rate
is always on the same chart as a detection rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from ...report.figures import LAYOUT, PALETTE, empty


def set_name(s: Mapping[str, Any]) -> str:
    return f"corrupt p={s['level']:g}" if s.get("level") is not None else str(s["set"])


def layer_scores(sets: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Layers × data sets: mean shift score minus the layer's threshold (positive: beyond it on average)."""
    title = "Per-layer shift score over each set (mean score − layer threshold)"
    if not sets:
        return empty(title, "no sets scored")
    layers = list(sets[0]["layers"])
    xs = [set_name(s) for s in sets]
    z = [[s["layers"][n]["mean_score"] - s["layers"][n]["threshold"] for s in sets] for n in layers]
    hover = [
        [
            f"{n} on {set_name(s)}<br>mean score {s['layers'][n]['mean_score']:.2f}, threshold "
            f"{s['layers'][n]['threshold']:.2f}<br>windows over the layer threshold "
            f"{s['layers'][n]['alarm_rate']:.0%}"
            for s in sets
        ]
        for n in layers
    ]
    fig = go.Figure(
        go.Heatmap(
            x=xs,
            y=layers,
            z=z,
            zmid=0,
            colorscale=[[0, "#1d4ed8"], [0.5, "#f9fafb"], [1, "#b91c1c"]],
            colorbar={"title": "score − threshold"},
            hovertext=hover,
            hoverinfo="text",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        title=title,
        height=max(320, 34 * len(layers) + 200),
        xaxis={"type": "category"},
        yaxis={"autorange": "reversed", "type": "category"},
        **LAYOUT,
    )
    return fig


def detection(sets: Sequence[Mapping[str, Any]], alpha: float) -> go.Figure:
    """Alarm rate per set: the held-out set is the measured false-alarm rate, the rest are detection rates;
    the calibrated false-alarm rate is the dashed line."""
    title = "Alarm rate per set (held-out: false alarms)"
    if not sets:
        return empty(title, "no sets scored")
    colors = [
        PALETTE[2] if s["set"] == "heldout" else PALETTE[0] if s["set"] == "corrupt" else PALETTE[3] for s in sets
    ]
    fig = go.Figure(
        go.Bar(
            x=[set_name(s) for s in sets],
            y=[s["alarm_rate"] * 100 for s in sets],
            marker_color=colors,
            text=[f"{s['alarm_rate']:.0%}" for s in sets],
            textposition="outside",
            hovertext=[f"{s['windows']} windows" for s in sets],
            name="alarm rate",
        )
    )
    # the line is named in the title: an annotation on it would sit on the bars' own labels
    fig.add_hline(y=alpha * 100, line_dash="dash", line_color="#6b7280")
    fig.update_layout(
        title=f"{title} · dashed: calibrated α = {alpha:.0%}",
        yaxis={"title": "windows alarmed (%)", "range": [0, 110]},
        height=420,
        **LAYOUT,
    )
    return fig


def detection_vs_corruption(sets: Sequence[Mapping[str, Any]], alpha: float) -> go.Figure:
    """Detection rate against the corruption probability, with the held-out false-alarm rate and α."""
    title = "Detection rate vs corruption level"
    corrupt = sorted((s for s in sets if s["set"] == "corrupt"), key=lambda s: s["level"])
    if not corrupt:
        return empty(title, "no corruption levels in this run")
    fig = go.Figure(
        go.Scatter(
            x=[s["level"] for s in corrupt],
            y=[s["alarm_rate"] * 100 for s in corrupt],
            mode="lines+markers",
            name="corrupted Shakespeare",
            line={"color": PALETTE[0]},
            hovertext=[f"{s['windows']} windows, mean score {s['mean_model_score']:.2f}" for s in corrupt],
        )
    )
    held = next((s for s in sets if s["set"] == "heldout"), None)
    if held is not None:
        fig.add_hline(
            y=held["alarm_rate"] * 100,
            line_color=PALETTE[2],
            annotation_text=f"held-out false alarms {held['alarm_rate']:.0%}",
            annotation_position="bottom right",
        )
    fig.add_hline(y=alpha * 100, line_dash="dash", line_color="#6b7280", annotation_text=f"α = {alpha:.0%}")
    fig.update_layout(
        title=title,
        xaxis={
            "title": "probability a character is replaced",
            "type": "log",
            "tickvals": [s["level"] for s in corrupt],
            "ticktext": [f"{s['level']:g}" for s in corrupt],
        },
        yaxis={"title": "windows alarmed (%)", "range": [0, 105]},
        height=420,
        **LAYOUT,
    )
    return fig


def window_scores(sets: Sequence[Mapping[str, Any]], threshold: float) -> go.Figure:
    """Every window's model score per set, with the model threshold."""
    title = "Model score of every window"
    if not sets:
        return empty(title, "no windows scored")
    fig = go.Figure()
    for i, s in enumerate(sets):
        fig.add_trace(
            go.Box(
                y=s["model_scores"],
                name=set_name(s),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 3, "color": PALETTE[i % len(PALETTE)]},
                line={"width": 1},
                showlegend=False,
            )
        )
    fig.add_hline(y=threshold, line_dash="dash", line_color="#b91c1c", annotation_text=f"threshold {threshold:.2f}")
    fig.update_layout(
        title=title, yaxis={"title": "model score (largest standardized layer score)"}, height=420, **LAYOUT
    )
    return fig


def check_layers(summary: Mapping[str, Any]) -> go.Figure:
    """One check: each layer's mean score beside its threshold, layers that moved most first."""
    title = "Per-layer shift score (mean over windows) and threshold"
    layers = summary.get("layers") or {}
    if not layers:
        return empty(title, "no layers scored")
    names = sorted(layers, key=lambda n: layers[n]["mean_score"] - layers[n]["threshold"], reverse=True)
    fig = go.Figure(
        [
            go.Bar(
                x=names,
                y=[layers[n]["mean_score"] for n in names],
                name="mean score",
                marker_color=[
                    PALETTE[1] if layers[n]["mean_score"] > layers[n]["threshold"] else PALETTE[0] for n in names
                ],
                hovertext=[f"windows over threshold {layers[n]['alarm_rate']:.0%}" for n in names],
            ),
            go.Scatter(
                x=names,
                y=[layers[n]["threshold"] for n in names],
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 28, "color": "#111827", "line": {"width": 3}},
                name="layer threshold",
            ),
        ]
    )
    fig.update_layout(title=title, yaxis={"title": "standardized score"}, height=420, **LAYOUT)
    return fig
