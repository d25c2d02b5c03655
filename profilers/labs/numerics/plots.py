"""Figures of the numerics lab, shared by the Numerics page and the report: records in, plotly figures out.

Pure functions: no store, no Streamlit. NaN/Inf cells are marked, never drawn as a
value; cells torch could not compute stay blank with their reason in the hover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from ...catalog import label
from ...report.figures import LAYOUT, PALETTE, empty
from . import analysis as analysis
from .spec import DTYPE_SHORT, NUMERICS_DTYPES, NUMERICS_VARIANTS


def eps_text(eps: float | None) -> str:
    return "no eps" if eps is None else f"{eps:.0e}".replace("e-0", "e-")


def _row_name(variant: str, dtype: str) -> str:
    return f"{label(variant)} · {DTYPE_SHORT.get(dtype, dtype)}"


def risk_map(records: Sequence[Mapping[str, Any]], eps_grid: Sequence[float], impl: str) -> go.Figure:
    """Variant·dtype × eps; colour = worst error over the input families ÷ the dtype's budget (log10); ✕ where
    NaN/Inf appeared; ○ where eps underflows in the dtype (judged for in-dtype arithmetic)."""
    title = f"Risk map: {impl}"
    if not records:
        return empty(title, "no cells for this implementation")
    rows = sorted(
        {(r["variant"], r["dtype"]) for r in records},
        key=lambda k: (NUMERICS_VARIANTS.index(k[0]), NUMERICS_DTYPES.index(k[1])),
    )
    xs = [eps_text(e) for e in eps_grid]
    ys = [_row_name(v, d) for v, d in rows]
    z = [[None] * len(xs) for _ in ys]
    hover = [[""] * len(xs) for _ in ys]
    nan_x, nan_y, nan_text, sub_x, sub_y = [], [], [], [], []
    for r in records:
        i = rows.index((r["variant"], r["dtype"]))
        cols = range(len(xs)) if r["eps"] is None else [list(eps_grid).index(r["eps"])]
        for j in cols:
            if r["unsupported"] and r["worst_err"] is None:
                hover[i][j] = f"not measured: {r['unsupported']}"
                continue
            if r["worst_err"] is not None and r["budget"]:
                z[i][j] = math.log10(max(r["worst_err"], 1e-30) / r["budget"])
            lines = [
                f"{ys[i]}, eps {eps_text(r['eps'])}",
                f"worst error {r['worst_err']:.3g} ({r['worst_input']}), budget {r['budget']:.3g}"
                if r["worst_err"] is not None
                else "no finite output",
            ]
            if r["eps_held"] is not None:
                lines.append(f"eps held as {r['eps_held']:.3g} ({r['eps_class']})")
            if r["over_budget_inputs"]:
                lines.append("over budget: " + ", ".join(r["over_budget_inputs"]))
            lines += r["causes"][:3]
            hover[i][j] = "<br>".join(lines)
            if r["nonfinite_inputs"]:
                nan_x.append(xs[j])
                nan_y.append(ys[i])
                nan_text.append(f"NaN/Inf on {', '.join(r['nonfinite_inputs'])}")
            if impl == "eager" and r["eps_class"] not in (None, "normal"):
                sub_x.append(xs[j])
                sub_y.append(ys[i])
    fig = go.Figure(
        go.Heatmap(
            x=xs,
            y=ys,
            z=z,
            zmid=0,
            colorscale=[[0, "#15803d"], [0.5, "#fef9c3"], [1, "#b91c1c"]],
            colorbar={"title": "log₁₀(error ÷ budget)"},
            hovertext=hover,
            hoverinfo="text",
            xgap=1,
            ygap=1,
        )
    )
    if nan_x:
        fig.add_trace(
            go.Scatter(
                x=nan_x,
                y=nan_y,
                mode="markers",
                marker={"symbol": "x", "size": 12, "color": "#111827", "line": {"width": 1, "color": "white"}},
                name="NaN/Inf",
                hovertext=nan_text,
                hoverinfo="text",
            )
        )
    if sub_x:
        fig.add_trace(
            go.Scatter(
                x=sub_x,
                y=sub_y,
                mode="markers",
                marker={"symbol": "circle-open", "size": 16, "color": "#1d4ed8", "line": {"width": 2}},
                name="eps underflows in the dtype",
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=title,
        height=max(360, 26 * len(ys) + 170),
        xaxis={"title": "eps", "type": "category"},
        yaxis={"autorange": "reversed", "type": "category"},
        **{**LAYOUT, "legend": {**LAYOUT["legend"], "y": -0.08}},
    )
    return fig


def error_vs_eps(cells: Sequence[Mapping[str, Any]], variant: str, dtype: str, impl: str) -> go.Figure:
    """One line per input family: the error (÷ the layer's output scale) against eps; NaN/Inf named on top."""
    title = f"{_row_name(variant, dtype)}, {impl}: error vs eps"
    sel = [c for c in cells if c["variant"] == variant and c["dtype"] == dtype and c["impl"] == impl]
    sel = [c for c in sel if c["status"] == "ok" and c["eps"] is not None]
    if not sel:
        return empty(title, "not measured for this combination")
    scales = analysis.output_scales(cells)
    fig = go.Figure()
    families = list(dict.fromkeys(c["input"] for c in sel))
    nan_at: dict[float, list[str]] = {}
    for i, fam in enumerate(families):
        pts = sorted((c for c in sel if c["input"] == fam), key=lambda c: c["eps"])
        xs, ys, exact = [], [], 0
        for c in pts:
            err = analysis.scaled_error(c, scales)
            if analysis.nonfinite(c):
                nan_at.setdefault(c["eps"], []).append(fam)
            elif err == 0:
                exact += 1  # exact on a log axis has no place: named in the legend instead of drawn at a floor
            elif err is not None:
                xs.append(c["eps"])
                ys.append(err)
        name = fam + (f" (exact at {exact} eps)" if exact else "")
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line={"color": PALETTE[i % len(PALETTE)]})
        )
    for eps, fams in nan_at.items():
        fig.add_annotation(
            x=math.log10(eps),
            y=1.0,
            yref="paper",
            text="NaN",
            showarrow=False,
            font={"color": "#b91c1c"},
            hovertext="NaN/Inf: " + ", ".join(fams),
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "eps", "type": "log", "exponentformat": "power"},
        yaxis={"title": "max |out − ref| ÷ output scale", "type": "log", "exponentformat": "power"},
        height=420,
        **LAYOUT,
    )
    return fig


def fused_vs_eager(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Per variant·dtype, the largest difference of torch's fused op from the in-dtype formula and from fp32
    statistics on healthy (typical) rows: a fused kernel that upcasts sits near the second, far from the first.
    The hover counts, over every input family, the outputs finite in one and NaN/Inf in the other."""
    healthy = [r for r in rows if r["input"] == "typical"] or list(rows)
    basis = "typical rows" if healthy is not rows and any(r["input"] == "typical" for r in rows) else "all rows"
    title = f"torch's fused operator vs the formula in the dtype and with fp32 statistics ({basis})"
    agg: dict[tuple[str, str], dict[str, float]] = {}
    for r in healthy:
        a = agg.setdefault((r["variant"], r["dtype"]), {"eager": 0.0, "upcast": 0.0, "mismatch": 0})
        for k in ("eager", "upcast"):
            v = r.get(f"vs_{k}_max_abs")
            if v is not None:
                a[k] = max(a[k], v)
    for r in rows:
        if (r["variant"], r["dtype"]) in agg:
            agg[(r["variant"], r["dtype"])]["mismatch"] += int(r.get("vs_eager_finiteness_mismatch") or 0)
    if not agg:
        return empty(title, "no fused operator was measured (fp8 and DyT have none in torch)")
    keys = sorted(agg, key=lambda k: (NUMERICS_VARIANTS.index(k[0]), NUMERICS_DTYPES.index(k[1])))

    def tick(key: tuple[str, str]) -> str:
        same = [n for n, k in (("eager", "eager"), ("fp32 stats", "upcast")) if agg[key][k] == 0]
        return _row_name(*key) + (f" (= {' and '.join(same)})" if same else "")

    xs = [tick(k) for k in keys]
    fig = go.Figure()
    for i, (k, name) in enumerate((("eager", "vs in-dtype formula (eager)"), ("upcast", "vs fp32 statistics"))):
        values = [agg[key][k] for key in keys]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[v if v > 0 else None for v in values],  # identical outputs: no bar on a log axis; said in the tick
                name=name,
                marker_color=PALETTE[i],
                hovertext=[
                    f"max |difference| {v:.3g}; over every input family, {agg[key]['mismatch']} outputs finite in "
                    "the fused op and NaN/Inf in the in-dtype formula, or the reverse"
                    for v, key in zip(values, keys)
                ],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis={"title": "max |native − other| (finite outputs)", "type": "log", "exponentformat": "power"},
        height=420,
        **LAYOUT,
    )
    return fig
