"""Numerics: error and NaN/Inf risk by norm × dtype × eps against float64; the recommended minimum eps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pages._shared import db_path, devices, lab_live_panel, open_store, run_label, start_lab_job
from profilers.catalog import label
from profilers.labs.drift.spec import parse_args
from profilers.labs.numerics import analysis as analysis
from profilers.labs.numerics import plots as plots_numerics
from profilers.labs.numerics import section
from profilers.labs.numerics.spec import (
    DEMO_MODEL,
    DTYPE_SHORT,
    INPUTS,
    LIBRARY_EPS,
    NUMERICS_DTYPES,
    NUMERICS_IMPLS,
    NUMERICS_VARIANTS,
    RECORDED_HELP,
    NumericsSpec,
    parse_eps,
)
from profilers.report.labels import na
from profilers.spec import SpecError

st.title("Numerics")
st.caption(
    "How each normalization layer behaves when reduced precision stresses its denominator: error against a float64 "
    "reference and NaN/Inf counts for every variant × dtype × eps × input family, and the smallest eps that is safe "
    "per dtype, derived from the measured table."
)


@st.cache_data(max_entries=8, show_spinner=False)
def load(db: str, run_id: int, stamp: str) -> dict[str, Any]:
    """A run's artifacts (``stamp`` changes when the run finishes, so a finished run is read again)."""
    with open_store() as store:
        return {
            "cells": store.artifact(run_id, "numerics/cells") or [],
            "dtypes": {d["dtype"]: d for d in store.artifact(run_id, "numerics/dtypes") or []},
            "eps": store.artifact(run_id, "numerics/eps") or [],
            "recorded": store.artifact(run_id, "numerics/recorded"),
        }


def _status(run: dict[str, Any]) -> None:
    extra = run.get("extra") or {}
    done, total = extra.get("cells_done"), extra.get("cells_total")
    st.markdown(f"**Run {run['id']}** — {run['label'] or 'no label'}")
    if done is not None and total:
        st.progress(min(done / total, 1.0), text=f"{done:,} / {total:,} cells")
    else:
        st.caption("recording activations / preparing …")


@st.fragment(run_every=1.0)
def live() -> None:
    """Numerics runs still measuring, from the store: every browser session sees the same progress."""
    lab_live_panel(
        "numerics",
        "numerics",
        _status,
        starting="Starting the worker (recording activations from the demo model trains it first: ~1 min) …",
    )


live()

with open_store() as store:
    runs = store.list_runs(kind="numerics")

with st.expander("New numerics run", expanded=not runs, icon=":material/add_circle:"):
    c1, c2 = st.columns(2)
    variants = c1.multiselect("Variants", NUMERICS_VARIANTS, default=list(NUMERICS_VARIANTS), format_func=label)
    dtypes = c1.multiselect(
        "dtypes", NUMERICS_DTYPES, default=list(NUMERICS_DTYPES), format_func=lambda d: DTYPE_SHORT.get(d, d)
    )
    eps_text = c1.text_input(
        "eps grid", "decades", help="comma list (e.g. 1e-12,1e-6,1e-5) or 'decades' (1e-12 … 1e-2)"
    )
    impls = c1.multiselect(
        "Implementations",
        list(NUMERICS_IMPLS),
        default=list(NUMERICS_IMPLS),
        help=" · ".join(f"{k}: {v}" for k, v in NUMERICS_IMPLS.items()),
    )
    inputs = c2.multiselect(
        "Input families", list(INPUTS), default=list(INPUTS), help=" · ".join(f"{k}: {v}" for k, v in INPUTS.items())
    )
    source = c2.radio(
        "Recorded activations",
        ["demo", "none", "my model"],
        horizontal=True,
        help=RECORDED_HELP
        + ". demo: the drift demo's byte-level language model, trained on Shakespeare by the training lab.",
    )
    model_path = args_text = ""
    if source == "my model":
        model_path = c2.text_input(
            "Model import path",
            placeholder="mypackage.models:build",
            help="a function returning (model, data iterator)",
        )
        args_text = c2.text_input("Arguments (KEY=VALUE, comma separated)", "")
        c2.caption("NormScope imports and calls your function; it never unpickles a file.")
    r1, r2, r3 = c2.columns(3)
    rows = r1.number_input("Rows", 2, 4096, 64)
    hidden = r2.number_input("Hidden", 2, 8192, 256)
    groups = r3.number_input("GroupNorm groups", 1, 8192, 8)
    device = c2.selectbox("Device", devices())
    run_name = c2.text_input("Label (optional)", max_chars=200, key="num-label")
    spec = None
    try:
        spec = NumericsSpec(
            variants=tuple(variants),
            dtypes=tuple(dtypes),
            eps=parse_eps(eps_text),
            inputs=tuple(inputs),
            impls=tuple(impls),
            rows=int(rows),
            hidden=int(hidden),
            groups=int(groups),
            recorded=None if source == "none" else DEMO_MODEL if source == "demo" else model_path,
            recorded_args=parse_args([p for p in args_text.split(",") if p.strip()]),
            device=device,
            label=run_name or None,
        )
    except SpecError as e:
        st.error(str(e))
    if spec is not None:
        st.markdown(f"**{spec.cells():,} cells** ({len(spec.families)} input families).")
        if st.button("Start", type="primary", key="start-numerics"):
            start_lab_job(spec, ("numerics", "run"), "numerics")

if not runs:
    st.info(
        "No numerics run yet. Start one above (the defaults take about a minute on two CPU cores), or run "
        "`python -m profilers numerics run` on any machine and import its export on the Runs page."
    )
    st.stop()

by_id = {r["id"]: r for r in runs}
run_id = st.selectbox("Numerics run", list(by_id), format_func=lambda i: run_label(by_id[i]))
run = by_id[run_id]
data = load(str(db_path()), run_id, f"{run['status']}{run.get('finished_at')}")
cells, dtypes = data["cells"], data["dtypes"]
if not cells:
    st.warning(
        f"Run {run_id} is {run['status']} and holds no measured cells"
        + (f": {run['error']}" if run.get("error") else " yet.")
    )
    st.stop()

spec_d = run["spec"]
groups_n = spec_d.get("groups", 8)
recs = analysis.recommend(cells, dtypes, groups_n)
known = analysis.known_case(cells, dtypes)

if known:
    risky = [k for k in known if k["risk"]]
    lines = [
        f"**{k['impl']}**: "
        + (
            f"{k['nan_count']:,} NaN, {k['inf_count']:,} Inf of {k['numel']:,} outputs"
            if k["status"] == "ok"
            else "N/A"
        )
        + (f" — {k['cause']}" if k["cause"] else "")
        for k in known
    ]
    box = st.warning if risky else st.success
    box(
        "**pytorch#41527 — LayerNorm, fp16, eps 1e-12, all-zero rows: "
        + ("NaN/Inf risk.**" if risky else "no NaN/Inf measured.**")
        + "\n\n"
        + "\n\n".join(lines),
        icon=":material/warning:" if risky else ":material/check_circle:",
    )

st.subheader("Recommended minimum eps")
st.caption(
    "The smallest eps from which every larger eps measured gives no NaN/Inf on any input family, keeps every family "
    "that some eps can fix within the dtype's error budget, and (in-dtype arithmetic) is a normal number in the dtype."
)
table = analysis.recommendation_table(recs)
st.dataframe(pd.DataFrame(section.recommendation_rows(table)), hide_index=True, width="stretch")
with st.expander("Evidence for each recommendation"):
    for r in recs:
        st.markdown(
            f"**{label(r.variant)} · {DTYPE_SHORT.get(r.dtype, r.dtype)} · {r.impl}** — {r.evidence}"
            + (f"  \n*not fixed by eps:* {'; '.join(r.not_fixed_by_eps)}" if r.not_fixed_by_eps else "")
        )

st.subheader("Risk map")
impls_run = [i for i in analysis.IMPL_ORDER if i in spec_d.get("impls", analysis.IMPL_ORDER)]
impl = st.radio(
    "Implementation", impls_run, horizontal=True, help=" · ".join(f"{k}: {v}" for k, v in NUMERICS_IMPLS.items())
)
st.plotly_chart(
    plots_numerics.risk_map(analysis.risk_map(cells, impl, dtypes, groups_n), spec_d["eps"], impl), width="stretch"
)

st.subheader("Error against eps")
v1, v2 = st.columns(2)
variants_run = [v for v in NUMERICS_VARIANTS if v in spec_d["variants"] and v != "dyt"]
if variants_run:
    pick_v = v1.selectbox("Variant", variants_run, format_func=label)
    pick_d = v2.selectbox("dtype", spec_d["dtypes"], format_func=lambda d: DTYPE_SHORT.get(d, d))
    st.plotly_chart(plots_numerics.error_vs_eps(cells, pick_v, pick_d, impl), width="stretch")

st.subheader("Fused operator vs formula")
st.caption(
    "torch's fused operators may upcast inside: their outputs sit near fp32 statistics and far from the in-dtype "
    "formula. Where they reformulate (y = x·γ/σ + (β − μ·γ/σ)), tiny σ shows up as error on constant rows."
)
st.plotly_chart(plots_numerics.fused_vs_eager(analysis.fused_vs_eager(cells)), width="stretch")

st.subheader("eps in each dtype")
eps_rows = data["eps"]
if eps_rows:
    eps_df = pd.DataFrame(eps_rows)
    eps_df["held"] = [f"{h:.3g} ({c})" for h, c in zip(eps_df["held"], eps_df["class"])]
    pivot = eps_df.pivot(index="eps", columns="dtype", values="held")
    pivot = pivot[[d for d in NUMERICS_DTYPES if d in pivot.columns]].rename(columns=DTYPE_SHORT)
    pivot.index = [f"{e:g}" for e in pivot.index]
    st.dataframe(pivot, width="stretch")
    st.caption(
        "Below a dtype's smallest normal an eps underflows: held as a subnormal (precision lost; flushed to 0 "
        "on flush-to-zero hardware) or as 0."
    )

st.subheader("Cells")
f1, f2, f3, f4 = st.columns(4)
fv = f1.multiselect("variant", spec_d["variants"], format_func=label, key="c-v")
fd = f2.multiselect("dtype", spec_d["dtypes"], format_func=lambda d: DTYPE_SHORT.get(d, d), key="c-d")
families = list(dict.fromkeys(c["input"] for c in cells))
fi = f3.multiselect("input family", families, key="c-i")
fm = f4.multiselect("implementation", impls_run, key="c-m")
scales = analysis.output_scales(cells)
view = [
    c
    for c in cells
    if (not fv or c["variant"] in fv)
    and (not fd or c["dtype"] in fd)
    and (not fi or c["input"] in fi)
    and (not fm or c["impl"] in fm)
]
st.dataframe(
    pd.DataFrame(
        [
            {
                "variant": label(c["variant"]),
                "dtype": DTYPE_SHORT.get(c["dtype"], c["dtype"]),
                "eps": na(c["eps"], "{:g}", "no eps"),
                "input": c["input"],
                "impl": c["impl"],
                "status": c["status"],
                "error ÷ output scale": na(
                    analysis.scaled_error(c, scales), "{:.3g}", c.get("err_reason") or c.get("reason")
                ),
                "max abs error": na(c.get("max_abs_err"), "{:.3g}", c.get("err_reason") or c.get("reason")),
                "rel L2 error": na(c.get("rel_l2_err"), "{:.3g}", c.get("err_reason") or c.get("reason")),
                "NaN": na(c.get("nan_count"), "{:,}", c.get("reason")),
                "Inf": na(c.get("inf_count"), "{:,}", c.get("reason")),
                "eps held": na(c.get("eps_held"), "{:.3g}", "no eps"),
                "variance overflowed (groups)": na(
                    c.get("variance_overflow_groups"), "{:,}", "not visible in a fused op"
                ),
                "zero denominators (groups)": na(c.get("zero_denominator_groups"), "{:,}", "not visible in a fused op"),
                "native − eager (max abs)": na(c.get("vs_eager_max_abs"), "{:.3g}", "native cells only"),
                "cause": analysis.cause(c, dtypes) or "",
            }
            for c in view[:5000]
        ]
    ),
    hide_index=True,
    width="stretch",
)
if len(view) > 5000:
    st.caption(f"Showing 5,000 of {len(view):,} cells: narrow the filters.")

with st.expander("Method"):
    st.markdown(
        f"Each input family is {spec_d.get('rows')} rows × {spec_d.get('hidden')} (GroupNorm with {groups_n} groups; "
        "BatchNorm in eval mode with running statistics calibrated on the same data and held in the dtype, its "
        "family property given to channels). Every output is compared with a float64 reference of the same formula "
        "on the same stored tensors with the exact eps. The error is max |out − ref| ÷ the layer's output scale "
        "(max |ref| on the typical family); the budget is the correctness gate's tolerance (fp8: its machine "
        "epsilon as rtol)."
    )
    st.markdown("**Input families**\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in INPUTS.items()))
    rec = data["recorded"]
    if rec:
        st.markdown(
            f"- **recorded**: {rec['description']}: {rec['rows']} rows of width {rec['hidden']} from layers "
            f"{', '.join(rec['layers'])}"
        )
    else:
        st.caption("This run has no recorded activations (started with --recorded none).")
    st.dataframe(pd.DataFrame(section.dtype_rows(dtypes)), hide_index=True, width="stretch")
    st.markdown("**Library default eps**\n\n" + "\n".join(f"- {k}: {v}" for k, v in LIBRARY_EPS.items()))
