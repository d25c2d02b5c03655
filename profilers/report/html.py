"""The HTML a report is made of, shared by the report's shell and every section: escaped text, embedded
figures, tables with the labels and number formats of ``labels.py``."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from .labels import cell


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def script_safe(text: str) -> str:
    """JSON that cannot close the <script> element it sits in."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class Figures:
    """Numbers the figures of one report; each becomes a div drawn from its embedded JSON. It also carries the
    reader's equivalence margin (``--margin-pct``), so every section decides its verdicts at the same one."""

    def __init__(self, margin_pct: float | None = None) -> None:
        self.n = 0
        self.margin_pct = margin_pct

    def margin(self, default_pct: float) -> float:
        """The margin the report was asked for, else the section's own default (a kernel's, a step's)."""
        return self.margin_pct if self.margin_pct is not None else default_pct

    def div(self, fig: go.Figure) -> str:
        self.n += 1
        fid = f"fig{self.n}"
        payload = script_safe(fig.to_json())
        return (
            f'<div class="fig"><div id="{fid}" style="height:{int(fig.layout.height or 450)}px"></div></div>'
            f'<script>(function(){{var f={payload};Plotly.newPlot("{fid}",f.data,f.layout,'
            f'{{"displaylogo":false,"responsive":true}});}})();</script>'
        )


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for _, title in columns)
    body = []
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            cells.append(f"<td>{esc(v)}</td>" if isinstance(v, str) else f'<td class="num">{esc(cell(key, v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
