"""Recommend: rank the choices for a target model, every considered candidate accounted for, claims checked."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._shared import (
    default_runs,
    margin_input,
    open_store,
    remember_runs,
    run_label,
    runs_or_welcome,
    start_sweep,
)
from profilers.analysis import recommend
from profilers.analysis.method import allocator_sentence, allocator_short, differences
from profilers.catalog import KERNEL_MARGIN_PCT
from profilers.report.labels import HELP, number
from profilers.sensors import energy_capability
from profilers.spec import DTYPES, PRESETS, VARIANTS, SpecError

st.title("Recommend")
st.caption(
    "The cheapest choice for your target, measured on your machine. A difference is decided against a margin "
    "of practical equivalence: candidates equivalent within it are tied, and the simpler one is recommended. "
    + " · ".join(f"**{k}**: {HELP[k]}" for k in ("native", "eager", "compiled"))
)

with open_store() as store:
    runs = runs_or_welcome(store, "Nothing measured yet: rankings come from your own runs.", "quick-recommend")
    by_id = {r["id"]: r for r in runs}
    chosen = st.multiselect(
        "Runs to use (the machine)",
        list(by_id),
        default=default_runs(runs, "recommend"),
        format_func=lambda i: run_label(by_id[i]),
        key="runs-recommend",
    )
    remember_runs(chosen)
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
            tokens = st.select_slider(
                "Tokens per step", options, value=max(options), format_func=lambda n: f"{n:,}", key="s" + key
            )
            hidden = PRESETS[preset].hidden
        else:
            tokens = int(st.number_input("Tokens", 1, 1 << 24, big_t, key="n1" + key))
            hidden = int(st.number_input("Hidden", 1, 1 << 20, big_h, key="n2" + key))
        run_dtype = (spec.get("dtypes") or ["bfloat16"])[0]
        dtype = st.selectbox("dtype", DTYPES, index=DTYPES.index(run_dtype), key="d" + key)
    points = store.points(chosen)
    with c2:
        modes = spec.get("modes") or ["fwd"]
        uses = ["inference (fwd)", "training (fwd+bwd)"]
        use = st.radio("Use", uses, horizontal=True, index=0 if "fwd" in modes else 1, key="u" + key)
        has_energy = any(p.get("energy_mj_per_call") is not None for p in points)
        metric = st.radio(
            "Rank by",
            ["time", "energy"],
            horizontal=True,
            help=None if has_energy else "The chosen runs hold no energy readings (see below why).",
        )
        variants = st.multiselect("Consider", VARIANTS, default=list(recommend.DEFAULT_VARIANTS))
        i1, i2 = st.columns(2)
        with_imprecise = i1.toggle("Include imprecise points", help="past their dtype's tolerance, right in fp32")
        with_unstable = i2.toggle("Include unstable points", help="their 95% interval stayed wider than the target")
        margin = margin_input(KERNEL_MARGIN_PCT, "the kernel's time", "margin-recommend")

if not variants:
    st.info("Pick at least one variant to consider.")
    st.stop()
include = ("ok",) + (("imprecise",) if with_imprecise else ()) + (("unstable",) if with_unstable else ())
target = recommend.Target(
    tokens=tokens,
    hidden=hidden,
    dtype=dtype,
    mode="fwd" if use.startswith("inference") else "fwdbwd",
    metric=metric,
    variants=tuple(variants),
    include=include,
)
device = by_id[chosen[0]]["spec"]["device"] if chosen else "cpu"
ranking = recommend.rank(points, target, device=device, margin_pct=margin)
capability = energy_capability(device.split(":")[0])

if metric == "energy" and not has_energy:
    notes = sorted({p["energy_note"] for p in points if p.get("energy_note")})
    st.warning(
        "Energy cannot be ranked: the chosen runs hold no energy readings"
        + (f" ({'; '.join(notes)})" if notes else "")
        + (". " + capability.reason if not capability.ok else ". Run a sweep with energy on to rank by energy.")
    )

if ranking.missing:
    st.warning(ranking.missing)
    suggested = recommend.suggest_spec(target, device)
    blocked = metric == "energy" and not capability.ok
    if st.button(
        f"Start this sweep on {device}",
        type="primary",
        disabled=blocked,
        help=capability.reason if blocked else f"{len(suggested.points())} points, the device's default method",
    ):
        try:
            if start_sweep(suggested):
                st.switch_page("pages/run.py")
        except SpecError as e:
            st.error(str(e))
else:
    if ranking.shape_note:
        st.caption(ranking.shape_note)
    (st.success if ranking.decided else st.info)(ranking.headline)
    for line in ranking.lines:
        st.markdown(f"- {line}")
    st.caption(ranking.interval_note)
    best = ranking.candidates[0]
    rows = []
    for tier_no, tier in enumerate(ranking.tiers, start=1):
        for c in tier:
            r = recommend.versus(best, c, metric)
            v = ranking.verdicts.get(c.name)
            rows.append(
                {
                    "rank": str(tier_no),
                    "choice": c.name + (" (recommended)" if c is ranking.pick else ""),
                    f"{metric} ({target.unit})": number(c.value),
                    "× best (95% interval)": "best" if c is best else f"{r.value:.3f} ({r.lo:.3f}-{r.hi:.3f})",
                    f"verdict (±{margin:g}%)": "the cheapest" if v is None else v.label,
                    "status": c.status,
                    "compared by": "—" if c is best else r.method,
                    "shape": f"{c.tokens:,}×{c.hidden:,}",
                    "run": str(c.run_id),
                }
            )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    bound = [c.name for c in ranking.candidates if (c.point.get("extra") or {}).get("launch_bound")]
    if bound and metric == "time":
        st.caption(
            f"Launch-bound on the measured host: {', '.join(bound)} (the CPU takes longer to launch a call than the "
            "GPU to run it). The ranking is by GPU time, what the norm costs inside a model step whose GPU work "
            "runs ahead of the host; a step that is itself launch-bound pays each call's launch instead (Results "
            "lists the launch times)."
        )

if ranking.left_out:
    st.markdown("**Considered, not ranked**")
    st.markdown("\n".join(f"- **{c.name}** — {c.status}: {c.reason}" for c in ranking.left_out))

chosen_runs = [by_id[i] for i in chosen]
for run in chosen_runs:
    if allocator_sentence(run):
        st.caption(f"Run {run['id']}: {allocator_sentence(run)}.")
if len(chosen_runs) > 1:
    diffs = differences(chosen_runs[0], chosen_runs[1])
    if diffs:
        st.warning(
            f"Runs {chosen_runs[0]['id']} and {chosen_runs[1]['id']} were measured differently ("
            + "; ".join(diffs)
            + "): points from different runs are compared without pairing."
        )

st.subheader("Claims check")
modes_used = sorted({m for r in chosen_runs if (m := allocator_short(r))})
if modes_used:
    st.caption(
        "Measured with " + " and ".join(modes_used) + ("" if len(modes_used) == 1 else ": the runs differ in method")
    )
claims = recommend.claims_check(points, dtype, target.mode, margin_pct=margin)
if not claims:
    st.info(f"The chosen runs have no clean LayerNorm/RMSNorm/DyT pairs in {dtype} {target.mode}; measure them first.")
else:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "claim": c.claim,
                    "implementation": c.impl,
                    "measured here": c.measured,
                    "verdict": c.verdict,
                    "on a rerun": c.rerun,
                    "compared by": c.method,
                }
                for c in claims
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        recommend.margin_note(margin) + " A verdict stands for a rerun only where the rerun interval (the run's "
        "interval widened by this machine's calibrated between-run spread) reaches the same verdict; else it "
        "holds in this run only. 'paired rounds': both timed in the same interleaved rounds."
    )
