"""The report's section for a numerics run: the known fp16 case, the recommended eps, the risk maps, the method."""

from __future__ import annotations

from typing import Any

from ...catalog import label
from ...report.html import esc
from ...report.html import table as html_table
from ...store import Store
from . import analysis as analysis
from . import plots as plots_numerics
from .spec import DTYPE_SHORT, INPUTS, LIBRARY_EPS, NUMERICS_IMPLS, RECORDED, RECORDED_HELP


def recommendation_rows(table: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The recommended eps per variant and dtype, one column per implementation: the page's table and the report's."""
    return [
        {
            "variant": label(r["variant"]),
            "dtype": DTYPE_SHORT.get(r["dtype"], r["dtype"]),
            "eager (in dtype)": analysis.recommendation_text(r, "eager"),
            "upcast (fp32 stats)": analysis.recommendation_text(r, "upcast"),
            "native (torch fused)": analysis.recommendation_text(r, "native"),
            "safe for all three": analysis.recommendation_text(r, "all_impls"),
        }
        for r in table
    ]


def dtype_rows(dtypes: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """What each dtype can hold, as measured in the run: the page's table and the report's."""
    return [
        {
            "dtype": DTYPE_SHORT.get(d, d),
            "max": f"{f['max']:.4g}",
            "smallest normal": f"{f['smallest_normal']:.3g}",
            "smallest subnormal": f"{f['smallest_subnormal']:.3g}",
            "machine eps": f"{f['machine_eps']:.3g}",
            "arithmetic": f["arithmetic"],
        }
        for d, f in dtypes.items()
    ]


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    rid = run["id"]
    cells = store.artifact(rid, "numerics/cells") or []
    dtypes = {d["dtype"]: d for d in store.artifact(rid, "numerics/dtypes") or []}
    recorded = store.artifact(rid, "numerics/recorded")
    spec = run["spec"]
    title = f"Numerics: eps × precision (run {rid}" + (f", {esc(run['label'])}" if run.get("label") else "") + ")"
    parts = [f"<h2>{title}</h2>"]
    if not cells:
        parts.append(
            f'<p class="warn">Run {rid} is {esc(run["status"])} and holds no measured cells'
            + (f": {esc(run['error'])}" if run.get("error") else "")
            + ".</p>"
        )
        return parts
    groups = spec.get("groups", 8)
    recs = analysis.recommend(cells, dtypes, groups)
    table = analysis.recommendation_table(recs)
    known = analysis.known_case(cells, dtypes)
    if known:
        items = "".join(
            f"<li><b>{esc(k['impl'])}</b>: "
            + (f"{k['nan_count']} NaN, {k['inf_count']} Inf of {k['numel']} outputs" if k["status"] == "ok" else "N/A")
            + (f" — {esc(k['cause'])}" if k["cause"] else "")
            + "</li>"
            for k in known
        )
        risky = any(k["risk"] for k in known)
        cls = "warn" if risky else "answer"
        parts.append(
            f'<div class="{cls}"><b>pytorch#41527 — LayerNorm, fp16, eps 1e-12, all-zero rows:</b> '
            f"{'NaN/Inf risk' if risky else 'no NaN/Inf measured'}<ul>{items}</ul></div>"
        )
    parts += [
        "<h3>Recommended minimum eps</h3>",
        "<p>The smallest eps from which every larger eps measured gives no NaN/Inf on any input family, keeps "
        "every family that some eps can fix within the dtype's error budget, and (for in-dtype arithmetic) is a "
        "normal number in the dtype.</p>",
        html_table(rows := recommendation_rows(table), [(k, k) for k in rows[0]] if rows else []),
        "<details><summary>Evidence per variant, dtype and implementation</summary><ul>"
        + "".join(
            f"<li><b>{esc(label(r.variant))} {esc(DTYPE_SHORT.get(r.dtype, r.dtype))} {esc(r.impl)}</b>: "
            f"{esc(r.evidence)}"
            + (f"<br><i>not fixed by eps:</i> {esc('; '.join(r.not_fixed_by_eps))}" if r.not_fixed_by_eps else "")
            + "</li>"
            for r in recs
        )
        + "</ul></details>",
    ]
    for impl in [i for i in analysis.IMPL_ORDER if i in spec.get("impls", analysis.IMPL_ORDER)]:
        parts.append(
            figs.div(plots_numerics.risk_map(analysis.risk_map(cells, impl, dtypes, groups), spec["eps"], impl))
        )
    parts.append(figs.div(plots_numerics.fused_vs_eager(analysis.fused_vs_eager(cells))))
    families = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in INPUTS.items() if k in spec.get("inputs", []))
    if recorded:
        families += (
            f"<li><b>{RECORDED}</b>: {esc(RECORDED_HELP)} — {esc(recorded['description'])}, {recorded['rows']} rows "
            f"of width {recorded['hidden']} from {len(recorded['layers'])} layers</li>"
        )
    impls = "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in NUMERICS_IMPLS.items())
    libs = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in LIBRARY_EPS.items())
    parts += [
        "<h3>How the numerics were measured</h3>",
        f"<p>{len(cells)} cells: {spec.get('rows')} rows × {spec.get('hidden')} per input family (GroupNorm with "
        f"{groups} groups; BatchNorm in eval mode with running statistics calibrated on the same data and held in "
        "the dtype, its family property given to channels). Every output is compared with a float64 reference of "
        "the same formula on the same stored tensors with the exact eps. Errors are max |out − ref| divided by "
        "the layer's output scale (max |ref| on the typical family); budgets are the correctness gate's "
        "tolerances (fp8: its machine epsilon as rtol).</p>",
        f"<p>Implementations:</p><ul>{impls}</ul><p>Input families:</p><ul>{families}</ul>",
        html_table(facts := dtype_rows(dtypes), [(k, k) for k in facts[0]] if facts else []),
        f"<details><summary>Library default eps</summary><ul>{libs}</ul></details>",
    ]
    return parts
