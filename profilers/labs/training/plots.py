"""Figures of the training-stability lab, shared by the Training page and the report: cells in, plotly out.

Pure functions of the stored cell documents. A diverged run's curve ends at its divergence step, marked
with a cross; a missing value is left out, never drawn as 0.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...catalog import PLACEMENTS
from ...report.figures import LAYOUT, PALETTE, empty

SMOOTH_STEPS = 10  # training-loss curves: moving average over this many steps


def placement_label(name: str) -> str:
    return PLACEMENTS[name].display if name in PLACEMENTS else name


def _color(placement: str) -> str:
    names = list(PLACEMENTS)
    return PALETTE[names.index(placement) % len(PALETTE)] if placement in names else PALETTE[-1]


_DASH = {"post_ln": "solid", "pre_ln": "solid", "pre_ln_layerscale": "dot", "deepnorm": "dash", "peri_ln": "dashdot"}


def _dash(placement: str) -> str:
    """Line style per placement, so curves that coincide (two stalled placements) stay distinguishable."""
    return _DASH.get(placement, "solid")


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _smooth(values: Sequence[float | None], window: int) -> list[float | None]:
    out: list[float | None] = []
    for i in range(len(values)):
        span = [v for v in values[max(0, i - window + 1) : i + 1] if v is not None]
        out.append(sum(span) / len(span) if span and values[i] is not None else None)
    return out


def _train_cells(cells: Sequence[dict[str, Any]], lr: float, warmup: int, depth: int) -> list[dict[str, Any]]:
    return [
        d
        for d in cells
        if (c := d.get("cell") or {}).get("kind") == "train"
        and "grid" in (c.get("groups") or [])
        and c.get("lr") == lr
        and c.get("warmup") == warmup
        and c.get("depth") == depth
    ]


def _median_band(curves: list[list[float | None]]) -> tuple[list[float | None], list[float | None], list[float | None]]:
    n = max((len(c) for c in curves), default=0)
    med, lo, hi = [], [], []
    for i in range(n):
        vals = [c[i] for c in curves if i < len(c) and c[i] is not None]
        med.append(statistics.median(vals) if vals else None)
        lo.append(min(vals) if vals else None)
        hi.append(max(vals) if vals else None)
    return med, lo, hi


def loss_curves(cells: Sequence[dict[str, Any]], lr: float, warmup: int, depth: int) -> go.Figure:
    """Training loss per placement: the median over seeds (moving average over SMOOTH_STEPS steps) and the
    band between the seeds' lowest and highest curve; crosses where a seed diverged."""
    title = f"Training loss by placement, lr {lr:g}, warmup {warmup}, {depth} layers (median and range over seeds)"
    chosen = _train_cells(cells, lr, warmup, depth)
    if not chosen:
        return empty(title, "no training runs at these settings")
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in chosen:
        by[d["cell"]["placement"]].append(d)
    traces: list[dict[str, Any]] = []
    unigram = None
    for pl in [p for p in PLACEMENTS if p in by]:
        runs = by[pl]
        curves = [_smooth(d["loss"], SMOOTH_STEPS) for d in runs]
        med, lo, hi = _median_band(curves)
        x = list(range(1, len(med) + 1))
        color = _color(pl)
        name = f"{placement_label(pl)} ({len(runs)} seeds)"
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": hi,
                "mode": "lines",
                "line": {"width": 0},
                "showlegend": False,
                "hoverinfo": "skip",
                "legendgroup": pl,
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": lo,
                "mode": "lines",
                "line": {"width": 0},
                "fill": "tonexty",
                "fillcolor": _rgba(color, 0.18),
                "showlegend": False,
                "hoverinfo": "skip",
                "legendgroup": pl,
            }
        )
        traces.append(
            {
                "type": "scatter",
                "x": x,
                "y": med,
                "mode": "lines",
                "name": name,
                "legendgroup": pl,
                "line": {"color": color, "width": 2, "dash": _dash(pl)},
                "hovertemplate": f"{placement_label(pl)}<br>step %{{x}}: loss %{{y:.3f}}<extra></extra>",
            }
        )
        div = [(d["diverged_step"], d["seed"]) for d in runs if d.get("diverged_step") is not None]
        if div:
            ys = [next((v for v in reversed(med[: s + 1]) if v is not None), None) for s, _ in div]
            traces.append(
                {
                    "type": "scatter",
                    "x": [s + 1 for s, _ in div],
                    "y": ys,
                    "mode": "markers",
                    "name": f"{placement_label(pl)} diverged",
                    "legendgroup": pl,
                    "marker": {"symbol": "x", "size": 12, "color": color},
                    "text": [f"seed {seed} diverged at step {s}" for s, seed in div],
                    "hovertemplate": "%{text}<extra></extra>",
                }
            )
        unigram = unigram or runs[0].get("unigram_nats")
    fig = go.Figure(data=traces)
    if unigram:
        fig.add_hline(
            y=unigram,
            line_dash="dot",
            line_color="#6b7280",
            annotation_text="unigram baseline (validation)",
            annotation_position="top right",
        )
    fig.update_layout(
        title=title, xaxis_title="step", yaxis_title="training loss (nats per byte)", height=480, **LAYOUT
    )
    return fig


def divergence_map(rows: Sequence[dict[str, Any]], depth: int) -> go.Figure:
    """Failure rate (diverged or did not train) over learning rate × warmup, one panel per placement;
    each cell says how many runs diverged and how many failed."""
    title = f"Which runs failed, {depth} layers: learning rate × warmup per placement (colour: failed fraction)"
    grid = [r for r in rows if "grid" in r["groups"] and r["depth"] == depth]
    if not grid:
        return empty(title, "no grid runs at this depth")
    placements = [p for p in PLACEMENTS if any(r["placement"] == p for r in grid)]
    lrs = sorted({r["lr"] for r in grid})
    warmups = sorted({r["warmup"] for r in grid})
    fig = make_subplots(
        rows=1,
        cols=len(placements),
        subplot_titles=[placement_label(p) for p in placements],
        shared_yaxes=True,
        horizontal_spacing=0.03,
    )
    for i, pl in enumerate(placements):
        z, text = [], []
        for w in warmups:
            zr, tr = [], []
            for lr in lrs:
                g = [r for r in grid if r["placement"] == pl and r["lr"] == lr and r["warmup"] == w]
                if not g:
                    zr.append(None)
                    tr.append("not run")
                    continue
                failed, div = sum(r["failed"] for r in g), sum(r["diverged"] for r in g)
                zr.append(failed / len(g))
                tr.append(f"failed {failed}/{len(g)}<br>diverged {div}/{len(g)}")
            z.append(zr)
            text.append(tr)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[f"{lr:g}" for lr in lrs],
                y=[f"warmup {w}" for w in warmups],
                text=text,
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                colorscale=[[0, "#dcfce7"], [0.5, "#fde68a"], [1, "#fca5a5"]],
                showscale=i == len(placements) - 1,
                colorbar={"title": "failed"},
                hovertemplate="lr %{x}, %{y}<br>%{text}<extra></extra>",
            ),
            row=1,
            col=i + 1,
        )
        fig.update_xaxes(title_text="learning rate", type="category", row=1, col=i + 1)
    layout = {**LAYOUT, "margin": {"l": 80, "r": 20, "t": 80, "b": 60}}
    fig.update_layout(title=title, height=360, **layout)
    return fig


def init_profile(inits: Sequence[dict[str, Any]], which: str = "ffn_out_grad_norm") -> go.Figure:
    """‖∇W‖ of each layer's FFN output projection at initialisation (Xiong et al. 2020, Fig. 3), one line per
    placement and depth; dashed for the deeper model."""
    title = "Gradient norm by layer at initialisation: FFN output projection (mean over init seeds)"
    if not inits:
        return empty(title, "no init profile in this grid")
    depths = sorted({r["depth"] for r in inits})
    traces = []
    for pl in [p for p in PLACEMENTS if any(r["placement"] == p for r in inits)]:
        for r in sorted((r for r in inits if r["placement"] == pl), key=lambda r: r["depth"]):
            ys = r[which]
            dash = "solid" if r["depth"] == depths[0] else ("dash" if r["depth"] == depths[-1] else "dot")
            traces.append(
                {
                    "type": "scatter",
                    "x": list(range(1, len(ys) + 1)),
                    "y": ys,
                    "mode": "lines+markers",
                    "name": f"{placement_label(pl)}, {r['depth']} layers",
                    "line": {"color": _color(pl), "dash": dash},
                    "hovertemplate": f"{placement_label(pl)} L{r['depth']}<br>layer %{{x}}: %{{y:.4g}}<extra></extra>",
                }
            )
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=title,
        xaxis_title="layer (1 = nearest the embedding)",
        yaxis_title="‖∇W‖ (log)",
        yaxis_type="log",
        height=460,
        **LAYOUT,
    )
    return fig


def grad_norm_curves(cells: Sequence[dict[str, Any]], lr: float, warmup: int, depth: int) -> go.Figure:
    """Global gradient norm (before clipping) over training, median over seeds per placement."""
    title = f"Global gradient norm over training, lr {lr:g}, warmup {warmup}, {depth} layers (median over seeds)"
    chosen = _train_cells(cells, lr, warmup, depth)
    if not chosen:
        return empty(title, "no training runs at these settings")
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in chosen:
        by[d["cell"]["placement"]].append(d)
    traces = []
    for pl in [p for p in PLACEMENTS if p in by]:
        logs = [d["log"] for d in by[pl]]
        steps = max((lg["step"] for lg in logs), key=len)
        med, _, _ = _median_band(
            [[g if g is None or math.isfinite(g) else None for g in lg["grad_norm"]] for lg in logs]
        )
        traces.append(
            {
                "type": "scatter",
                "x": steps[: len(med)],
                "y": med,
                "mode": "lines",
                "name": placement_label(pl),
                "line": {"color": _color(pl), "dash": _dash(pl)},
            }
        )
    fig = go.Figure(data=traces)
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="‖∇θ‖ (log)", yaxis_type="log", height=420, **LAYOUT)
    return fig
