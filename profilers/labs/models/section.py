"""The report section of a model run: the answer in sentences, the candidates' table, the claim check."""

from __future__ import annotations

from typing import Any

from ...catalog import STEP_MARGIN_PCT
from ...report import kernels
from ...report.html import esc, table
from ...store import Store
from . import analysis, plots
from .spec import ModelSweepSpec


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    points = store.points(run["id"])
    spec = ModelSweepSpec.from_dict(run["spec"])
    margin = figs.margin(STEP_MARGIN_PCT)
    parts = [
        f"<h2>Model: {esc(spec.name)} (run {run['id']})</h2>",
        f"<p>{esc(spec.model['model_type'])} built from its config with random weights, batch {spec.batch}, "
        f"{spec.tokens:,} tokens per call; every candidate's logits and gradients were checked against the model's "
        "own norms in float64 before it was timed.</p>",
        "<div class='answer'><ul>"
        + "".join(f"<li>{esc(s)}</li>" for s in analysis.answers(points, margin))
        + "</ul></div>",
        figs.div(plots.savings_chart(analysis.savings(points), "What each norm implementation saves")),
        table(analysis.table(points, margin), analysis.COLUMNS),
    ]
    claims = analysis.claim_check(points, margin)
    if claims:
        parts.append("<h3>The fine-tuning claim</h3>")
        cols = [("claim", "claim"), ("config", "where"), ("measured", "measured"), ("verdict", "verdict")]
        parts.append(table([c.__dict__ for c in claims], cols))
    return parts


def method(run: dict[str, Any]) -> str:
    """A model sweep is timed by the kernel engine: its method reads as a kernel run's."""
    return kernels.method(run)
