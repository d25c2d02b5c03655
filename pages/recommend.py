"""Recommend: rank the choices for a target model, with noise bands, and check the claims."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import open_store, run_label, runs_or_welcome, start_sweep
from profilers.analysis import recommend
from profilers.spec import DTYPES, PRESETS, VARIANTS, SpecError

st.title("Recommend")

with open_store() as store:
    runs = runs_or_welcome(store, "Nothing measured yet: rankings come from your own runs.", "quick-recommend")
    by_id = {r["id"]: r for r in runs}
    chosen = st.multiselect(
        "Runs to use (the machine)",
        list(by_id),
        default=[r["id"] for r in runs if r["status"] == "completed"][:1] or [runs[0]["id"]],
        format_func=lambda i: run_label(by_id[i]),
    )
    # defaults follow what the first chosen run measured, so the page opens on an answer
    spec = by_id[chosen[0]]["spec"] if chosen else {}
    shapes = [tuple(x) for x in spec.get("shapes", [])] or [(4096, 4096)]
    big_t, big_h = max(shapes, key=lambda x: x[0] * x[1])
    run_preset = spec.get("preset") if spec.get("preset") in PRESETS else None
    key = f"-{chosen[0] if chosen else 0}"
    c1, c2 = st.columns(2)
    with c1:
        mode = st.radio("Target", ["preset", "shape"], horizontal=True, index=0 if run_preset else 1, key="t" + key)
        if mode == "preset":
            names = list(PRESETS)
            preset = st.selectbox(
                "Model",
                names,
                index=names.index(run_preset) if run_preset else 2,
                format_func=lambda k: PRESETS[k].description,
                key="p" + key,
            )
            options = list(PRESETS[preset].tokens)
            tokens = st.select_slider("Tokens per step", options, value=max(options), key="s" + key)
            hidden = PRESETS[preset].hidden
        else:
            tokens = int(st.number_input("Tokens", 1, 1 << 24, big_t, key="n1" + key))
            hidden = int(st.number_input("Hidden", 1, 1 << 20, big_h, key="n2" + key))
        run_dtype = (spec.get("dtypes") or ["bfloat16"])[0]
        dtype = st.selectbox("dtype", DTYPES, index=DTYPES.index(run_dtype), key="d" + key)
    with c2:
        modes = spec.get("modes") or ["fwd"]
        uses = ["inference (fwd)", "training (fwd+bwd)"]
        use = st.radio("Use", uses, horizontal=True, index=0 if "fwd" in modes else 1, key="u" + key)
        metric = st.radio("Rank by", ["time", "energy"], horizontal=True)
        variants = st.multiselect("Consider", VARIANTS, default=list(recommend.DEFAULT_VARIANTS))
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
            cmp = recommend.versus(best, c)
            rows.append(
                {
                    "rank": tier_no,
                    "choice": c.name,
                    target.unit: c.value,
                    "noise ±%": round(c.noise_pct, 2),
                    "vs best": "best" if c is best else f"{cmp.diff_pct:+.1f}%",
                    "measurable?": "—" if c is best else ("no (tie)" if cmp.tie else "yes"),
                    "noisy point": "yes" if c.noisy else "",
                    "run": c.run_id,
                    "shape": f"{c.tokens}×{c.hidden}",
                }
            )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        placeholder="N/A",
        column_config={target.unit: st.column_config.NumberColumn(format="%.4g")},
    )
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
