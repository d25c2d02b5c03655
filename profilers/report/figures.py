"""What every figure shares, on the pages and in the report: the palette, the layout, the empty figure."""

from __future__ import annotations

import plotly.graph_objects as go

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
LEGEND_RIGHT = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"}
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 70, "r": 230, "t": 70, "b": 60},
    "legend": LEGEND_RIGHT,
    "hoverlabel": {"namelength": -1},
}


def empty(title: str, message: str) -> go.Figure:
    """A figure with nothing to draw says why, in its middle, under its title."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **LAYOUT)
    return fig
