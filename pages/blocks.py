"""Blocks: what the norm choice costs inside a real transformer block and a training step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import devices, margin_input, pick_lab_run, start_job
from profilers.catalog import BLOCK_FAMILIES, PLACEMENTS, STEP_MARGIN_PCT
from profilers.labs.blocks import analysis as blocks
from profilers.labs.blocks.spec import BLOCK_IMPLS, BLOCK_NORMS, STEP_MODE, BlockSweepSpec, default_block_spec
from profilers.report import plots
from profilers.report.labels import number
from profilers.spec import PRESETS, ROUND_PRESETS, SpecError

st.title("Blocks")
st.caption(
    "A kernel's speed is not a model's: this page times the norm inside a real transformer block and a "
    "training step, and breaks the block's time down by component, so the norm's share is measured. "
    + " · ".join(f"**{p.display}**: {p.help}" for p in PLACEMENTS.values())
)

run, points = pick_lab_run("blocks", "Block run")
if run is None:
    st.info("No block run yet: start one below (a BERT-base block on this CPU takes a few minutes).")
else:
    st.subheader("The answer")
    margin = margin_input(STEP_MARGIN_PCT, "the block's or the step's time", "margin-blocks")
    for line in blocks.answers(points, margin):
        st.markdown(f"- {line}")
    rows = blocks.component_rows(points)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["mode"], r["tokens"]), []).append(r)
    for (dtype, mode, tokens), group in groups.items():
        what = "one training step" if mode == STEP_MODE else f"one block, {mode}"
        st.plotly_chart(
            plots.block_components(group, f"Time by component: {what}, {dtype}, {tokens:,} tokens"), width="stretch"
        )
    if rows:
        over = [r["profiler_overhead_pct"] for r in rows if r.get("profiler_overhead_pct") is not None]
        if over:
            st.caption(
                "Shares come from one profiled session per point and are applied to the un-profiled p50; the "
                f"profiler slowed the calls by {min(over):+.0f}% to {max(over):+.0f}%. 'other': time outside the "
                "attention, MLP, norm and residual ranges (embedding, head and optimizer in a step; launch gaps)."
            )
    costs = blocks.placement_costs(points)
    if costs:
        st.subheader("Placements side by side")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "placement": PLACEMENTS[c.placement].display,
                        "norm": c.norm,
                        "implementation": c.impl,
                        "dtype": c.dtype,
                        "mode": c.mode,
                        "tokens": f"{c.tokens:,}",
                        "p50 (µs)": number(c.p50_us),
                        "time vs Pre-LN (95% interval)": "—"
                        if c.ratio is None
                        else f"×{c.ratio.value:.3f} ({c.ratio.lo:.3f}-{c.ratio.hi:.3f})",
                    }
                    for c in costs
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    claims = blocks.claims(points, margin)
    if claims:
        st.subheader("Claims at block and step level")
        st.dataframe(pd.DataFrame([c.__dict__ for c in claims]), hide_index=True, width="stretch")
    bad = [p for p in points if p["status"] in ("failed", "skipped", "imprecise", "unstable")]
    if bad:
        with st.expander(f"{len(bad)} points flagged or not timed, and why"):
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "placement": p["placement"],
                            "norm": p["variant"],
                            "implementation": p["impl"],
                            "mode": p["mode"],
                            "status": p["status"],
                            "why": p.get("gate_note") if p["status"] == "imprecise" else p.get("error"),
                        }
                        for p in bad
                    ]
                ),
                hide_index=True,
                width="stretch",
            )

st.subheader("New block sweep")
c1, c2 = st.columns(2)
with c1:
    device = st.selectbox("Device", devices(), key="blk-device")
    defaults = default_block_spec(device)
    presets = [k for k, v in PRESETS.items() if v.family]
    preset = st.selectbox(
        "Model",
        presets,
        index=presets.index(defaults.preset),
        format_func=lambda k: f"{PRESETS[k].description} · {BLOCK_FAMILIES[PRESETS[k].family].display}",
    )
    family = BLOCK_FAMILIES[PRESETS[preset].family]
    norms = st.multiselect("Norms", [n for n in BLOCK_NORMS if n in family.norms], default=list(defaults.norms))
    placements = st.multiselect(
        "Placements", list(PLACEMENTS), default=list(defaults.placements), format_func=lambda k: PLACEMENTS[k].display
    )
    impls = st.multiselect(
        "Implementations", list(BLOCK_IMPLS), default=list(defaults.impls), help="compiled: the whole block"
    )
with c2:
    seq = PRESETS[preset].seq_len or 512
    tokens_text = st.text_input(f"Tokens per step (multiples of {seq})", ", ".join(str(4 * seq) for _ in (0,)))
    dtypes = st.multiselect("dtypes", ["float32", "bfloat16", "float16"], default=list(defaults.dtypes))
    modes = st.multiselect("Modes", ["fwd", "fwdbwd", STEP_MODE], default=list(defaults.modes))
    depth = st.number_input("Stack depth for the training step", 1, 96, 2, help="used by the 'step' mode")
    b1, b2 = st.columns(2)
    budget = b1.number_input("Budget ms / point", 5, 60_000, int(defaults.budget_ms), key="blk-budget")
    accuracy = b2.selectbox("Comparisons", list(ROUND_PRESETS), index=0, key="blk-rounds")
    label_text = st.text_input("Label (optional)", max_chars=200, key="blk-label")

spec = None
try:
    tokens = [int(t) for t in tokens_text.replace(" ", "").split(",") if t]
    rounds, target = ROUND_PRESETS[accuracy]
    spec = BlockSweepSpec(
        preset=preset,
        norms=tuple(norms),
        placements=tuple(placements),
        impls=tuple(impls),
        tokens=tuple(tokens),
        dtypes=tuple(dtypes),
        modes=tuple(modes),
        device=device,
        step_depth=int(depth) if STEP_MODE in modes else None,
        budget_ms=float(budget),
        rounds=rounds,
        ci_target_pct=target,
        label=label_text or None,
    )
except ValueError as e:  # SpecError, or a token count that is not a number
    st.error(str(e) if isinstance(e, SpecError) else f"tokens must be whole numbers: {e}")

if spec is not None:
    n = len(spec.points())
    st.markdown(f"**{n} points** ({len(spec.tokens)} token count(s) × {len(spec.dtypes)} dtype(s) × modes).")
    if st.button("Start the block sweep", type="primary"):
        job = start_job(spec, ("blocks", "run"))
        if job is not None:
            st.session_state["last_job_pid"] = job.pid
            st.session_state["last_job_spec"] = str(job.spec_path)
            st.success(f"Started worker {job.pid}: follow it on the Run page; results appear here when it ends.")
