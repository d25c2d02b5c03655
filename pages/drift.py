"""Drift: the statistics of every norm layer's input as a drift monitor; the demo, profiles and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from pages._shared import db_path, lab_live_panel, local_dir, open_store, run_label, start_lab_job
from profilers.labs.drift import plots as plots_drift
from profilers.labs.drift.analysis import COMPONENT_HELP, calibration_spread
from profilers.labs.drift.spec import DEFAULT_LEVELS, DEMO_SETS, DriftSpec, parse_args, parse_levels
from profilers.spec import SpecError

st.title("Drift")
st.caption(
    "A normalization layer sees the data its model was trained on. NormScope hooks every norm layer, profiles the "
    "statistics of its input on reference data, and scores new data per layer against thresholds calibrated to a "
    "stated false-alarm rate on held-out in-distribution data."
)


@st.cache_data(max_entries=8, show_spinner=False)
def load(db: str, run_id: int, stamp: str) -> dict[str, Any]:
    with open_store() as store:
        return {name.removeprefix("drift/"): doc for name, doc in store.artifacts(run_id, "drift/").items()}


def start(spec: DriftSpec, action: str) -> None:
    start_lab_job(spec, ("drift", action), "drift")


def _status(run: dict[str, Any]) -> None:
    st.markdown(f"**Run {run['id']}** ({run['spec'].get('action')}) — {run['label'] or 'no label'}")
    st.caption((run.get("extra") or {}).get("stage") or "starting …")


@st.fragment(run_every=1.0)
def live() -> None:
    lab_live_panel("drift", "drift", _status)


live()

with open_store() as store:
    runs = store.list_runs(kind="drift")

with st.expander("Start", expanded=not runs, icon=":material/add_circle:"):
    demo_tab, profile_tab, check_tab = st.tabs(["Demo (Shakespeare)", "Profile a model", "Check new data"])
    with demo_tab:
        st.markdown(
            "A small byte-level language model trained by the training lab on Shakespeare (`make corpus` fetches the "
            "texts); the profile and thresholds come from held-out plays, and the shifted sets are: "
            + "; ".join(f"**{k}** — {v}" for k, v in DEMO_SETS.items() if k != "heldout")
            + ". About a minute on two CPU cores."
        )
        d1, d2, d3 = st.columns(3)
        steps = d1.number_input("Training steps", 50, 20_000, 800, step=50)
        alpha = d2.number_input("False-alarm rate α", 0.01, 0.25, 0.05, step=0.01, format="%.2f")
        levels_text = d3.text_input("Corruption levels", ",".join(f"{v:g}" for v in DEFAULT_LEVELS))
        try:
            demo_spec = DriftSpec(action="demo", steps=int(steps), alpha=float(alpha), levels=parse_levels(levels_text))
        except SpecError as e:
            st.error(str(e))
            demo_spec = None
        if demo_spec is not None and st.button("Run the demo", type="primary", key="start-demo"):
            start(demo_spec, "demo")
    with profile_tab:
        st.markdown(
            "Give a Python import path `package.module:function`; the function returns `(model, data iterator)` "
            "over reference data (the first windows are the reference, the next ones calibrate the thresholds). "
            "NormScope imports and calls it — it never unpickles a file. `demo` profiles the demo model."
        )
        p1, p2 = st.columns(2)
        model = p1.text_input("Model", "demo", key="p-model")
        args = p1.text_input("Arguments (KEY=VALUE, comma separated)", "", key="p-args")
        out = p2.text_input("Profile file to write", str(local_dir() / "drift-profile.json"), key="p-out")
        p_alpha = p2.number_input("False-alarm rate α", 0.01, 0.25, 0.05, step=0.01, format="%.2f", key="p-alpha")
        try:
            profile_spec = DriftSpec(
                action="profile",
                model=model.strip() or None,
                args=parse_args([a for a in args.split(",") if a.strip()]),
                profile=out,
                alpha=float(p_alpha),
            )
        except SpecError as e:
            st.error(str(e))
            profile_spec = None
        if profile_spec is not None and st.button("Profile", type="primary", key="start-profile"):
            start(profile_spec, "profile")
    with check_tab:
        st.markdown(
            "Score new data against a profile: the function returns the same model and an iterator over the new "
            "data. With the demo model try `set=code`, `set=prose` or `set=corrupt, level=0.1`."
        )
        c1, c2 = st.columns(2)
        prof = c1.text_input("Profile file", str(local_dir() / "drift-profile.json"), key="c-prof")
        c_model = c1.text_input("Model", "demo", key="c-model")
        c_args = c2.text_input("Arguments (KEY=VALUE, comma separated)", "set=code", key="c-args")
        check_spec = None
        if not Path(prof).is_file():
            st.info(f"No profile file at `{prof}` yet: make one on the Profile tab (or `drift profile -o FILE`).")
        else:
            try:
                check_spec = DriftSpec(
                    action="check",
                    model=c_model.strip() or None,
                    args=parse_args([a for a in c_args.split(",") if a.strip()]),
                    profile=prof,
                )
            except SpecError as e:
                st.error(str(e))
        if st.button("Check", type="primary", key="start-check", disabled=check_spec is None) and check_spec:
            start(check_spec, "check")
    st.caption(
        "Headless: `python -m profilers drift demo`, `drift profile --model pkg.mod:fn -o profile.json`, "
        "`drift check profile.json --model pkg.mod:fn --arg split=new`."
    )

if not runs:
    st.info(
        "No drift run yet. Run the demo above (it needs the Shakespeare corpus: `make corpus`), or profile your own "
        "model: `python -m profilers drift profile --model mypackage.models:build -o profile.json`."
    )
    st.stop()

by_id = {r["id"]: r for r in runs}
run_id = st.selectbox(
    "Drift run", list(by_id), format_func=lambda i: f"{run_label(by_id[i])} · {by_id[i]['spec'].get('action')}"
)
run = by_id[run_id]
data = load(str(db_path()), run_id, f"{run['status']}{run.get('finished_at')}")
profile = data.get("profile")
if profile is None:
    st.warning(
        f"Run {run_id} is {run['status']} and holds no results" + (f": {run['error']}" if run.get("error") else " yet.")
    )
    st.stop()
cal = profile["calibration"]
action = run["spec"].get("action")

if action == "demo":
    demo = data.get("demo") or {}
    sets = demo.get("sets") or []
    by_set = {plots_drift.set_name(s): s for s in sets}
    spread = calibration_spread(cal["windows"], cal["alpha"])
    m = st.columns(4)
    m[0].metric("calibrated false-alarm rate", f"{demo.get('alpha', 0):.0%}")
    fa = demo.get("false_alarm_rate")
    m[1].metric(
        "false alarms (held-out)",
        "N/A" if fa is None else f"{fa:.1%}",
        help=f"{demo.get('false_alarm_windows')} windows of held-out Shakespeare the calibration never saw; one "
        f"calibration on {cal['windows']} windows gives {spread[0]:.1%} ± {spread[1]:.1%}",
    )
    m[2].metric("detected: prose", f"{by_set['prose']['alarm_rate']:.0%}" if "prose" in by_set else "N/A")
    m[3].metric("detected: code", f"{by_set['code']['alarm_rate']:.0%}" if "code" in by_set else "N/A")
    model = demo.get("model") or {}
    val = model.get("val_loss")
    st.caption(
        f"Model: {model.get('how')}; {model.get('parameters', 0):,} parameters; held-out loss "
        f"{'N/A' if val is None else f'{val:.2f}'} nats (letter frequencies alone: "
        f"{model.get('unigram_nats', float('nan')):.2f}); trained in {model.get('train_s', 0):.0f} s."
    )
    st.plotly_chart(plots_drift.detection(sets, demo.get("alpha", 0.05)), width="stretch")
    st.plotly_chart(plots_drift.detection_vs_corruption(sets, demo.get("alpha", 0.05)), width="stretch")
    st.plotly_chart(plots_drift.layer_scores(sets), width="stretch")
    st.plotly_chart(plots_drift.window_scores(sets, cal["model_threshold"]), width="stretch")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "set": plots_drift.set_name(s),
                    "windows": s["windows"],
                    "alarm rate (%)": round(s["alarm_rate"] * 100, 1),
                    "mean model score": round(s["mean_model_score"], 2),
                    "layers that moved most": ", ".join(s["moved_most"]),
                    "characters": s.get("chars"),
                }
                for s in sets
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption("Prose: " + ", ".join(demo.get("prose_files") or []) + f" · code: {demo.get('code_files')} files.")
elif action == "check":
    check = data.get("check") or {}
    verdict = check.get("verdict") or {}
    (st.error if verdict.get("drift") else st.success)(verdict.get("text", "no verdict stored"))
    st.plotly_chart(plots_drift.check_layers(check), width="stretch")
    layers = check.get("layers") or {}
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "layer": n,
                    "mean score": round(v["mean_score"], 2),
                    "threshold": round(v["threshold"], 2),
                    "windows over threshold (%)": round(v["alarm_rate"] * 100, 1),
                    **{COMPONENT_HELP[c]: round(x, 4) for c, x in v["mean_components"].items()},
                    "low-variance rows (%)": round(v["low_var_fraction"] * 100, 2),
                    "reference low-variance rows (%)": round(v["reference_low_var_fraction"] * 100, 2),
                    "channels that moved (last window)": ", ".join(
                        f"{c['channel']} ({c['smd']:+.2f} sd)" for c in (check.get("top_channels") or {}).get(n, [])
                    ),
                }
                for n, v in sorted(
                    layers.items(), key=lambda kv: kv[1]["mean_score"] - kv[1]["threshold"], reverse=True
                )
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.success(
        f"Profile of {len(profile['layers'])} norm layers, thresholds calibrated on {cal['windows']} held-out windows "
        f"to a {cal['alpha']:.0%} false-alarm rate (model threshold {cal['model_threshold']:.2f}); written to "
        f"`{run['spec'].get('profile')}`."
    )

st.subheader("Profile")
st.dataframe(
    pd.DataFrame(
        [
            {
                "layer": lay["name"],
                "kind": lay["kind"],
                "channels": lay["channels"],
                "reference rows": lay["rows"],
                "mean |channel mean|": round(sum(abs(v) for v in lay["channel_mean"]) / lay["channels"], 4),
                "mean channel std": round(sum(lay["channel_std"]) / lay["channels"], 4),
                "max |x|": max(lay["channel_maxabs"]),
                "low-variance rows (%)": round(lay["low_var_fraction"] * 100, 2),
                "layer threshold": round(cal["layer_threshold"][lay["name"]], 2),
            }
            for lay in profile["layers"]
        ]
    ),
    hide_index=True,
    width="stretch",
)
with st.expander("Method"):
    st.markdown(
        "Forward pre-hooks on every normalization layer (LayerNorm, RMSNorm, GroupNorm, BatchNorm, InstanceNorm, "
        "NormScope's block norms, DyT, and modules whose class name ends in `Norm`) record each row's mean, RMS, "
        "max |x| and variance and per-channel sums of the layer's input.\n\n"
        + "\n".join(f"- **{k}**: {v}" for k, v in COMPONENT_HELP.items())
        + f"\n\nEach component is standardized by its mean and spread over {cal['windows']} held-out in-distribution "
        "windows; a layer's score is its largest standardized component, the model's score its largest layer score. "
        f"Thresholds are conformal (1 − α) quantiles of the held-out scores (α = {cal['alpha']:g}), so an "
        "in-distribution window alarms with probability at most α. Rows inside one window are not independent, "
        "so the KS p-value is not used for alarms. Over many windows, drift is declared when the number of alarms "
        "would happen in distribution with probability below 1% (binomial tail)."
    )
