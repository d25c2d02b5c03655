"""Recommend: rank the choices for a target model, with noise bands, and check the claims."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import open_store, quick_sweep_button, run_label, start_sweep
from profilers import recommend
from profilers.spec import DTYPES, PRESETS, VARIANTS, SpecError

st.title("Recommend")

with open_store() as store:
    runs = store.list_runs()
    if not runs:
        st.info("Nothing measured yet: rankings come from your own runs.")
        quick_sweep_button("quick-recommend")
        st.stop()
    by_id = {r["id"]: r for r in runs}
    c1, c2 = st.columns(2)
    with c1:
        mode = st.radio("Target", ["preset", "shape"], horizontal=True)
        if mode == "preset":
            preset = st.selectbox("Model", list(PRESETS), index=2, format_func=lambda k: PRESETS[k].description)
            tokens = st.select_slider(
                "Tokens per step", list(PRESETS[preset].tokens), value=max(PRESETS[preset].tokens)
            )
            hidden = PRESETS[preset].hidden
        else:
            tokens = int(st.number_input("Tokens", 1, 1 << 24, 4096))
            hidden = int(st.number_input("Hidden", 1, 1 << 20, 4096))
        dtype = st.selectbox("dtype", DTYPES, index=1)
    with c2:
        use = st.radio("Use", ["inference (fwd)", "training (fwd+bwd)"], horizontal=True)
        metric = st.radio("Rank by", ["time", "energy"], horizontal=True)
        variants = st.multiselect("Consider", VARIANTS, default=list(recommend.DEFAULT_VARIANTS))
        chosen = st.multiselect(
            "Runs to use (the machine)",
            list(by_id),
            default=[r["id"] for r in runs if r["status"] == "completed"][:1] or [runs[0]["id"]],
            format_func=lambda i: run_label(by_id[i]),
        )
    points = store.points(chosen)

if not variants:
    st.info("Pick at least one variant to consider.")
    st.stop()
target = recommend.Target(
    tokens=tokens,
    hidden=hidden,
    dtype=dtype,
    mode="fwd" if use.startswith("inference") else "fwdbwd",
    metric=metric,
    variants=tuple(variants),
)
device = by_id[chosen[0]]["spec"]["device"] if chosen else "cpu"
ranking = recommend.rank(points, target, device=device)

if ranking.missing:
    st.warning(ranking.missing)
    spec = recommend.suggest_spec(target, device)
    if st.button(f"Start this sweep on {device}", type="primary"):
        try:
            if start_sweep(spec):
                st.switch_page("pages/run.py")
        except SpecError as e:
            st.error(str(e))
else:
    if ranking.shape_note:
        st.caption(ranking.shape_note)
    (st.success if len(ranking.tiers[0]) == 1 else st.info)(ranking.headline)
    best = ranking.candidates[0]
    rows = []
    for tier_no, tier in enumerate(ranking.tiers, start=1):
        for c in tier:
            cmp = recommend.compare(best, c)
            rows.append(
                {
                    "rank": tier_no,
                    "choice": c.name,
                    f"{target.unit}": round(c.value, 3),
                    "noise ±%": round(c.noise_pct, 2),
                    "vs best": "best" if c is best else f"{cmp.diff_pct:+.1f}%",
                    "measurable?": "—" if c is best else ("no (tie)" if cmp.tie else "yes"),
                    "noisy point": "yes" if c.noisy else "",
                    "run": c.run_id,
                    "shape": f"{c.tokens}×{c.hidden}",
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="N/A")
    for line in ranking.lines:
        st.markdown(f"- {line}")

st.subheader("Claims check")
claims = recommend.claims_check(points, dtype, target.mode)
if not claims:
    st.info(f"The chosen runs have no LayerNorm/RMSNorm/DyT pairs in {dtype} {target.mode}; measure them first.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {"claim": c.claim, "implementation": c.impl, "measured here": c.measured, "verdict": c.verdict}
                for c in claims
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        "A difference inside the combined noise band (half of each p20–p80 band, added in quadrature) is "
        "reported as no measurable difference."
    )
