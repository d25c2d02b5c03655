"""The report section of a block run: the answer in sentences, time by component, placements, claims."""

from __future__ import annotations

from typing import Any

from ...catalog import PLACEMENTS, STEP_MARGIN_PCT
from ...report import kernels, plots
from ...report.html import esc, table
from ...store import Store
from . import analysis as blocks


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    points = store.points(run["id"])
    spec = run["spec"]
    margin = figs.margin(STEP_MARGIN_PCT)
    parts = [
        f"<h2>Blocks: {esc(spec.get('preset'))} (run {run['id']})</h2>",
        "<div class='answer'><ul>"
        + "".join(f"<li>{esc(s)}</li>" for s in blocks.answers(points, margin))
        + "</ul></div>",
    ]
    rows = blocks.component_rows(points)
    for (dtype, mode, tokens), group in _by(rows, ("dtype", "mode", "tokens")).items():
        parts.append(figs.div(plots.block_components(group, f"Time by component: {dtype} {mode}, {tokens:,} tokens")))
    costs = blocks.placement_costs(points)
    if costs:
        cost_rows = [
            {
                "placement": PLACEMENTS[c.placement].display,
                "norm": c.norm,
                "impl": c.impl,
                "dtype": c.dtype,
                "mode": c.mode,
                "tokens": c.tokens,
                "p50_us": c.p50_us,
                "vs_pre_ln": "—" if c.ratio is None else f"×{c.ratio.value:.3f} ({c.ratio.lo:.3f}-{c.ratio.hi:.3f})",
            }
            for c in costs
        ]
        cols = [(k, k.replace("_", " ")) for k in ("placement", "norm", "impl", "dtype", "mode", "tokens")]
        parts.append(table(cost_rows, [*cols, ("p50_us", "p50 (µs)"), ("vs_pre_ln", "time vs Pre-LN (95% interval)")]))
    claims = blocks.claims(points, margin)
    if claims:
        parts.append("<h3>Claims at block and step level</h3>")
        parts.append(
            table(
                [c.__dict__ for c in claims],
                [
                    ("claim", "claim"),
                    ("level", "level"),
                    ("config", "where"),
                    ("measured", "measured"),
                    ("verdict", "verdict"),
                ],
            )
        )
    return parts


def _by(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def method(run: dict[str, Any]) -> str:
    """A block sweep is timed by the kernel engine: its method reads as a kernel run's."""
    return kernels.method(run)
