"""The model lab's figure: what each norm implementation saves of the model's time, with its 95% interval."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ...catalog import label
from ...report.figures import LAYOUT, PALETTE, empty
from .analysis import WHAT, Saving


def _baseline(items: Sequence[Saving]) -> str:
    """What the bars are measured against: the model's own module unless the sweep named another baseline."""
    bases = {(s.base["variant"], s.base["impl"]) for s in items}
    if len(bases) == 1:
        ((variant, impl),) = bases
        return "its own norm module" if impl == "own" else label(variant, impl)
    return "the sweep's baseline"


def savings_chart(items: Sequence[Saving], title: str) -> go.Figure:
    """Horizontal bars: % of the own module's time saved per candidate and mode (negative: slower), with the
    paired 95% interval as error bars; a line at 0 (no change)."""
    if not items:
        return empty(title, "no candidate timed beside the model's own norm module")
    modes = list(dict.fromkeys(s.point["mode"] for s in items))
    fig = go.Figure()
    for i, mode in enumerate(modes):
        rows = [s for s in items if s.point["mode"] == mode]
        fig.add_trace(
            go.Bar(
                orientation="h",
                name=WHAT.get(mode, mode),
                y=[f"{label(s.point['variant'], s.point['impl'])} · {s.point['dtype']}" for s in rows],
                x=[s.saving_pct for s in rows],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [s.hi_pct - s.saving_pct for s in rows],
                    "arrayminus": [s.saving_pct - s.lo_pct for s in rows],
                },
                marker={"color": PALETTE[i % len(PALETTE)]},
                hovertemplate="%{y}: %{x:+.1f}% saved<extra>" + WHAT.get(mode, mode) + "</extra>",
            )
        )
    fig.add_vline(x=0, line_width=1, line_color="#666")
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title=f"% of the model's time saved vs {_baseline(items)} (95% interval; negative: slower)",
        height=max(300, 40 * len(items) + 170),
        **{**LAYOUT, "margin": {"l": 230, "r": 200, "t": 60, "b": 60}},
    )
    return fig
