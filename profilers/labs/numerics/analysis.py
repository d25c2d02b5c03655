"""What the numerics table means: the risk map, the causes of NaN/Inf, and the recommended minimum eps (no torch).

Everything here is derived from the measured cells of a run (``measure.py`` beside it), so a
different table gives a different answer. The rule for the recommended minimum eps of a
(variant, dtype, implementation):

- a cell's **error** is its max |out − ref| divided by the layer's output scale (max |ref| on the
  typical family at the same cell: a norm's outputs are O(1) by construction, so an error on a
  degenerate row is judged against the size of a healthy output, not against that row's own tiny
  output); it is **within budget** when it is at most the dtype's max-rel budget (the correctness
  gate's tolerance, ``catalog.tolerance``; fp8 has no torch.testing rtol, so its machine epsilon
  stands in, as fp16's rtol 1e-3 matches fp16's epsilon 9.8e-4);
- an input family is **fixable by eps** when the largest eps measured brings it within budget
  without NaN/Inf; a family no eps fixes (x² overflowing fp16 in the variance, say) is listed
  apart with its error: eps cannot help there, fp32 statistics can;
- an eps is **safe** when no family gives NaN/Inf, every fixable family is within budget, and, when
  the statistics are computed in the dtype (``eager``), eps is a normal number there (an eps below
  the smallest normal underflows: it is held as a subnormal with lost precision, or as 0, and
  flush-to-zero hardware treats a subnormal as 0);
- the recommendation is the smallest eps from which every larger eps measured is safe too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ... import catalog

Cell = Mapping[str, Any]
IMPL_ORDER = ("eager", "upcast", "native")


# -- error budgets --------------------------------------------------------------------------------
def reduced_elements(variant: str, rows: int, hidden: int, groups: int) -> int:
    """How many elements one output's statistics sum over (BatchNorm in eval mode reads stored statistics)."""
    n = {"layernorm": hidden, "rmsnorm": hidden, "groupnorm": hidden // max(groups, 1)}.get(variant, 1)
    return max(2, n)


def budget(dtype: str, n_reduced: int, machine_eps: float | None = None) -> tuple[float, float]:
    """(max-rel, rel-L2) errors a cell may have in ``dtype`` and still count as within budget."""
    if dtype in catalog.RTOL:
        return catalog.tolerance(dtype, n_reduced)
    if machine_eps is None:
        raise KeyError(f"no error budget for {dtype}: its machine epsilon is needed")
    # the gate's formula with the dtype's machine epsilon as its rtol (fp16: rtol 1e-3, epsilon 9.8e-4)
    acc = catalog.RTOL["float32"] * math.log2(max(2, n_reduced))
    return 2 * machine_eps + 4 * acc, machine_eps + acc


def cell_budget(cell: Cell, dtypes: Mapping[str, Mapping[str, Any]], groups: int) -> tuple[float, float]:
    n = reduced_elements(cell["variant"], cell["rows"], cell["hidden"], groups)
    return budget(cell["dtype"], n, (dtypes.get(cell["dtype"]) or {}).get("machine_eps"))


def nonfinite(cell: Cell) -> int:
    return int(cell.get("nan_count") or 0) + int(cell.get("inf_count") or 0)


def ref_scale(cell: Cell) -> float | None:
    """max |ref| of a cell (older records: from the max-abs and max-rel errors)."""
    if cell.get("ref_max_abs") is not None:
        return float(cell["ref_max_abs"])
    if cell.get("max_rel_err") and cell.get("max_abs_err") is not None:
        return cell["max_abs_err"] / cell["max_rel_err"]
    return None


def output_scales(cells: Iterable[Cell]) -> dict[tuple, float]:
    """The layer's output scale per (variant, dtype, eps, impl): max |ref| on the typical family."""
    out = {}
    for c in cells:
        if c["input"] == "typical" and c["status"] == "ok":
            scale = ref_scale(c)
            if scale:
                out[(c["variant"], c["dtype"], c["eps"], c["impl"])] = scale
    return out


def scaled_error(cell: Cell, scales: Mapping[tuple, float]) -> float | None:
    """max |out − ref| ÷ the layer's output scale (1 when the typical family was not measured)."""
    if cell.get("max_abs_err") is None:
        return None
    scale = scales.get((cell["variant"], cell["dtype"], cell["eps"], cell["impl"]), 1.0)
    return cell["max_abs_err"] / scale


def within(cell: Cell, limit: float, scales: Mapping[tuple, float]) -> bool:
    """The scaled error within ``limit`` (NaN/Inf are judged apart)."""
    err = scaled_error(cell, scales)
    return err is not None and err <= limit


# -- causes -----------------------------------------------------------------------------------------
_GROUP_WORD = {"batchnorm": "channels", "groupnorm": "groups"}


def cause(cell: Cell, dtypes: Mapping[str, Mapping[str, Any]] | None = None) -> str | None:
    """Why a cell gives NaN/Inf, or why its variance overflowed, from what was measured; None when neither."""
    bad = nonfinite(cell)
    over = cell.get("variance_overflow_groups") or 0
    zero_den = cell.get("zero_denominator_groups") or 0
    word = _GROUP_WORD.get(cell["variant"], "rows")
    dt = cell["dtype"]
    facts = (dtypes or {}).get(dt) or {}
    if bad and zero_den:
        stat = "mean(x²)" if cell["variant"] == "rmsnorm" else "running variance" if word == "channels" else "variance"
        held = cell.get("eps_held")
        eps_text = (
            f"eps {cell['eps']:g} rounds to 0 in {dt}"
            if held == 0
            else f"eps {cell['eps']:g} is held as {held:.3g} in {dt}"
            if held is not None
            else "eps"
        )
        num = "x" if cell["variant"] == "rmsnorm" else "x − mean"
        return (
            f"{eps_text} and the {stat} of {zero_den} {word} is 0 in {dt}: ({num})·rsqrt(0) = 0·∞ = NaN "
            f"({cell.get('nan_count', 0)} NaN, {cell.get('inf_count', 0)} Inf)"
        )
    if over:
        limit = f" (max {facts['max']:g})" if facts.get("max") else ""
        effect = "NaN/Inf outputs" if bad else "outputs collapse towards β"
        return f"x² overflowed {dt}{limit} in {over} {word}: the variance is ∞ and {effect}"
    if bad:
        who = "torch's fused operator" if cell.get("impl") == "native" else "the formula"
        return f"{who} returned {cell.get('nan_count', 0)} NaN and {cell.get('inf_count', 0)} Inf in {dt}"
    return None


# -- the risk map ------------------------------------------------------------------------------------
def risk_map(cells: Sequence[Cell], impl: str, dtypes: Mapping[str, Mapping[str, Any]], groups: int) -> list[dict]:
    """One record per (variant, dtype, eps) for ``impl``: the worst scaled error over the input families, the
    families over budget, where NaN/Inf appeared and why. DyT (no eps) has one record with eps None."""
    scales = output_scales(cells)
    out: dict[tuple, dict[str, Any]] = {}
    for c in cells:
        if c["impl"] != impl:
            continue
        key = (c["variant"], c["dtype"], c["eps"])
        r = out.setdefault(
            key,
            {
                "variant": c["variant"],
                "dtype": c["dtype"],
                "eps": c["eps"],
                "impl": impl,
                "eps_class": c.get("eps_class"),
                "eps_held": c.get("eps_held"),
                "worst_err": None,
                "worst_input": None,
                "budget": None,
                "over_budget_inputs": [],
                "nonfinite_inputs": [],
                "nonfinite_count": 0,
                "causes": [],
                "unsupported": None,
            },
        )
        if c["status"] != "ok":
            r["unsupported"] = c.get("reason")
            continue
        limit = cell_budget(c, dtypes, groups)[0]
        r["budget"] = limit
        err = scaled_error(c, scales)
        if err is not None and (r["worst_err"] is None or err > r["worst_err"]):
            r["worst_err"], r["worst_input"] = err, c["input"]
        if err is not None and err > limit:
            r["over_budget_inputs"].append(c["input"])
        if nonfinite(c):
            r["nonfinite_inputs"].append(c["input"])
            r["nonfinite_count"] += nonfinite(c)
        why = cause(c, dtypes)
        if why:
            r["causes"].append(f"{c['input']}: {why}")
    return list(out.values())


# -- the recommendation -------------------------------------------------------------------------------
@dataclass
class Recommendation:
    variant: str
    dtype: str
    impl: str
    eps: float | None  # the smallest safe eps; None when there is none (or the variant has no eps)
    status: str  # recommended | none_safe | no_eps | unsupported
    evidence: str
    blockers: list[str] = field(default_factory=list)  # why the next smaller eps is not safe
    not_fixed_by_eps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _short(dt: str) -> str:
    from .spec import DTYPE_SHORT

    return DTYPE_SHORT.get(dt, dt)


def _problems(
    by_input: Mapping[str, Cell],
    fixable: set[str],
    limit: float,
    scales: Mapping[tuple, float],
    impl: str,
    dtypes: Mapping[str, Any],
) -> list[str]:
    """Why one eps is not safe (empty when it is)."""
    out = []
    any_cell = next(iter(by_input.values()))
    if impl == "eager" and any_cell.get("eps_class") not in (None, "normal"):
        held = any_cell.get("eps_held")
        dt = any_cell["dtype"]
        normal = (dtypes.get(dt) or {}).get("smallest_normal")
        below = f" (smallest normal {normal:.3g})" if normal else ""
        what = "0" if held == 0 else f"{held:.3g}, a subnormal"
        out.append(f"eps {any_cell['eps']:g} underflows in {_short(dt)}{below}: held as {what}")
    for name, c in by_input.items():
        if nonfinite(c):
            why = cause(c, dtypes)
            out.append(f"{name}: {nonfinite(c)} NaN/Inf" + (f" ({why})" if why else ""))
        elif name in fixable and not within(c, limit, scales):
            out.append(f"{name}: error {scaled_error(c, scales):.3g} > budget {limit:.3g}")
    return out


def recommend(cells: Sequence[Cell], dtypes: Mapping[str, Mapping[str, Any]], groups: int) -> list[Recommendation]:
    """The recommended minimum eps for every (variant, dtype, implementation) measured, with its evidence."""
    scales = output_scales(cells)
    by_key: dict[tuple[str, str, str], list[Cell]] = {}
    for c in cells:
        by_key.setdefault((c["variant"], c["dtype"], c["impl"]), []).append(c)
    out = []
    for (variant, dtype, impl), cs in by_key.items():
        ok = [c for c in cs if c["status"] == "ok"]
        if not ok:
            reason = next((c.get("reason") for c in cs if c.get("reason")), "not measured")
            out.append(Recommendation(variant, dtype, impl, None, "unsupported", f"not measured: {reason}"))
            continue
        limit = cell_budget(ok[0], dtypes, groups)[0]
        if all(c["eps"] is None for c in ok):
            bad = sorted(c["input"] for c in ok if nonfinite(c) or not within(c, limit, scales))
            text = "DyT has no eps (no denominator)"
            text += (
                "; beyond budget or NaN/Inf on: " + ", ".join(bad)
                if bad
                else f"; all {len(ok)} input families within the {_short(dtype)} budget"
            )
            out.append(Recommendation(variant, dtype, impl, None, "no_eps", text))
            continue
        table: dict[float, dict[str, Cell]] = {}
        for c in ok:
            table.setdefault(c["eps"], {})[c["input"]] = c
        grid = sorted(table)
        largest = table[grid[-1]]
        fixable = {n for n, c in largest.items() if not nonfinite(c) and within(c, limit, scales)}
        not_fixed = [
            f"{n}: error {scaled_error(c, scales):.3g} > budget {limit:.3g} even at eps {grid[-1]:g}"
            for n, c in sorted(largest.items())
            if n not in fixable and not nonfinite(c) and scaled_error(c, scales) is not None
        ]
        problems = {e: _problems(table[e], fixable, limit, scales, impl, dtypes) for e in grid}
        best = None
        for e in reversed(grid):
            if problems[e]:
                break
            best = e
        if best is None:
            out.append(
                Recommendation(
                    variant,
                    dtype,
                    impl,
                    None,
                    "none_safe",
                    f"no eps up to {grid[-1]:g} is safe in {_short(dtype)}: " + "; ".join(problems[grid[-1]][:3]),
                    problems[grid[-1]],
                    not_fixed,
                )
            )
            continue
        i = grid.index(best)
        below = grid[i - 1] if i > 0 else None
        text = (
            f"eps {best:g} … {grid[-1]:g}: no NaN/Inf on {len(largest)} input families"
            + (f", eps a normal number in {_short(dtype)}" if impl == "eager" else "")
            + f", errors within the {_short(dtype)} budget {limit:.3g}"
        )
        text += (
            f"; at {below:g}: " + "; ".join(problems[below][:2])
            if below is not None
            else " (the smallest eps measured: a smaller one may be safe too)"
        )
        out.append(
            Recommendation(variant, dtype, impl, best, "recommended", text, problems[below] if below else [], not_fixed)
        )
    from .spec import NUMERICS_DTYPES, NUMERICS_VARIANTS

    def rank(seq: Sequence[str], key: str) -> int:
        return seq.index(key) if key in seq else len(seq)

    return sorted(
        out,
        key=lambda r: (rank(NUMERICS_VARIANTS, r.variant), rank(NUMERICS_DTYPES, r.dtype), rank(IMPL_ORDER, r.impl)),
    )


def recommendation_table(recs: Sequence[Recommendation]) -> list[dict[str, Any]]:
    """One row per (variant, dtype): the recommended minimum eps of each implementation, and the largest of
    them (``all_impls``: safe whichever implementation runs the model; none_safe when one of them has none)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in recs:
        row = rows.setdefault((r.variant, r.dtype), {"variant": r.variant, "dtype": r.dtype})
        row[f"{r.impl}_eps"] = r.eps
        row[f"{r.impl}_status"] = r.status
        row[f"{r.impl}_evidence"] = r.evidence
    for row in rows.values():
        statuses = [row.get(f"{i}_status") for i in IMPL_ORDER if row.get(f"{i}_status") not in (None, "unsupported")]
        values = [row.get(f"{i}_eps") for i in IMPL_ORDER if row.get(f"{i}_status") == "recommended"]
        row["all_impls_eps"] = None
        if statuses and all(s == "no_eps" for s in statuses):
            row["all_impls_status"] = "no_eps"
        elif statuses and all(s == "recommended" for s in statuses):
            row["all_impls_status"], row["all_impls_eps"] = "recommended", max(values)
        else:
            row["all_impls_status"] = "none_safe" if statuses else "unsupported"
    return list(rows.values())


def recommendation_text(row: Mapping[str, Any], impl: str) -> str:
    """One cell of the recommendation table (``impl`` may be ``all_impls``): the eps, or why there is none."""
    status = row.get(f"{impl}_status")
    if status is None:
        return "not measured"
    if status == "recommended":
        return f"{row[f'{impl}_eps']:g}"
    return {"none_safe": "none in the grid", "no_eps": "no eps", "unsupported": "N/A"}.get(status, status)


def known_case(cells: Iterable[Cell], dtypes: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """pytorch#41527: LayerNorm, fp16, eps 1e-12, all-zero rows, for each implementation measured, with its cause."""
    out = []
    for c in cells:
        if (c["variant"], c["dtype"], c["input"]) == ("layernorm", "float16", "zero") and c["eps"] == 1e-12:
            out.append(
                {
                    "impl": c["impl"],
                    "status": c["status"],
                    "nan_count": c.get("nan_count"),
                    "inf_count": c.get("inf_count"),
                    "numel": c.get("numel"),
                    "risk": nonfinite(c) > 0,
                    "cause": cause(c, dtypes) if c["status"] == "ok" else c.get("reason"),
                }
            )
    return out


def fused_vs_eager(cells: Iterable[Cell]) -> list[dict[str, Any]]:
    """Native cells where torch's fused operator differs from the in-dtype formula or from fp32 statistics."""
    out = []
    for c in cells:
        if c["impl"] != "native" or c["status"] != "ok":
            continue
        out.append(
            {
                "variant": c["variant"],
                "dtype": c["dtype"],
                "eps": c["eps"],
                "input": c["input"],
                "vs_eager_max_abs": c.get("vs_eager_max_abs"),
                "vs_eager_finiteness_mismatch": c.get("vs_eager_finiteness_mismatch"),
                "vs_upcast_max_abs": c.get("vs_upcast_max_abs"),
                "vs_upcast_finiteness_mismatch": c.get("vs_upcast_finiteness_mismatch"),
                "native_max_rel_err": c.get("max_rel_err"),
                "native_nonfinite": nonfinite(c),
            }
        )
    return out
