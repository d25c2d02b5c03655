"""Training stability: start a grid of small LMs, follow it, and read what it says about the placement claims."""

from __future__ import annotations

import streamlit as st

from pages._shared import db_path, devices, may_write, open_store, run_label, start_job
from profilers import corpus, jobs
from profilers.catalog import PLACEMENTS
from profilers.labs.training import analysis as analysis
from profilers.labs.training import plots as plots
from profilers.labs.training.section import load, settings_text, tables
from profilers.labs.training.spec import PRESETS, estimate_seconds, preset_spec
from profilers.spec import SpecError

st.title("Training stability")
st.caption(
    "Small byte-level language models trained on a real corpus, placement × learning rate × warmup × seed: "
    "divergence rates with intervals, losses over seeds, gradient norms by layer at initialisation, and "
    "whether the published claims hold on this machine."
)


@st.fragment(run_every=2.0)
def live() -> None:
    """Every training grid in progress, from the store (any browser session sees the same)."""
    with open_store() as store:
        active = [r for r in jobs.active_runs(store) if r.get("kind") == "training"]
        for run in active:
            done = len(store.artifacts(run["id"], "cell/"))
            prog = store.artifact(run["id"], "progress") or {}
            planned = run["points_planned"] or 1
            with st.container(border=True):
                st.markdown(f"**Run {run['id']}** training on `{run['spec']['device']}` — {run['label'] or 'no label'}")
                st.progress(min(done / planned, 1.0), text=f"{done} / {planned} cells")
                if prog.get("step") is not None:
                    loss = prog.get("loss")
                    st.caption(
                        f"now: {prog['cell']} step {prog['step']}/{prog['steps']}"
                        + (f", loss {loss:.3f}" if loss is not None else "")
                    )
                elif prog.get("cell"):
                    workers = run["spec"].get("workers", 1)
                    st.caption(f"last finished: {prog['cell']} ({workers} runs train side by side)")
                if st.button(
                    "Cancel", key=f"cancel-train-{run['id']}", icon=":material/stop_circle:", disabled=not may_write()
                ):
                    jobs.cancel(run)
                    st.toast(f"Cancelling run {run['id']}; finished cells are kept and the grid can resume.")


live()

with st.expander("New training grid", expanded=False):
    c1, c2, c3 = st.columns(3)
    preset = c1.selectbox("Preset", list(PRESETS), format_func=lambda k: f"{k}: {PRESETS[k]}")
    device = c2.selectbox("Device", devices(), key="train-device")
    label = c3.text_input("Label (optional)", max_chars=200, key="train-label")
    spec = None
    try:
        spec = preset_spec(preset, device=device, label=label or None)
    except SpecError as e:
        st.error(str(e))
    if spec is not None:
        cells = spec.cells()
        st.markdown(
            f"**{len(cells)} cells** ({sum(c.kind == 'train' for c in cells)} training runs, "
            f"{sum(c.kind == 'finetune' for c in cells)} pretrain-then-fine-tune pairs, "
            f"{sum(c.kind == 'init' for c in cells)} init profiles), about **{estimate_seconds(spec) / 60:.0f} min** "
            f"(estimate). Placements: {', '.join(PLACEMENTS[p].display for p in spec.placements)}; lrs "
            f"{', '.join(f'{x:g}' for x in spec.lrs)}; warmups {', '.join(map(str, spec.warmups))}; "
            f"seeds {len(spec.seeds)}; {', '.join(map(str, spec.depths))} layers."
        )
        have_corpus = any(corpus.shakespeare_dir().glob("*.txt")) if corpus.shakespeare_dir().is_dir() else False
        if not have_corpus:
            st.error(
                f"The Shakespeare corpus is not in {corpus.shakespeare_dir()}: run `make corpus` "
                "(or `python -m profilers corpus fetch`) once, then start the grid here."
            )
        if st.button("Start", type="primary", key="train-start", disabled=not have_corpus):
            busy = jobs.device_busy(db_path(), spec.device)
            if busy:
                st.warning(
                    f"Something is already measuring on {spec.device} (pid {busy['pid']}, "
                    f"{busy.get('purpose') or 'a sweep'}). Wait for it or cancel it."
                )
            else:
                job = start_job(spec, ("training", "run"))
                if job is None:
                    st.stop()
                st.session_state["train_job_pid"] = job.pid
                st.success(
                    f"Started worker {job.pid}. A grid stopped earlier with the same settings resumes where it "
                    "stopped; closing this tab does not stop it."
                )
                st.rerun()

with open_store() as store:
    runs = store.list_runs(kind="training")
    if not runs:
        st.info(
            "No training grids yet. Start the quick preset above (about a quarter of an hour on 2 CPU cores), or "
            "run `python -m profilers training run --preset quick`."
        )
        st.stop()
    finished = [r for r in runs if r["status"] == "completed"]
    default = runs.index(finished[0]) if finished else 0
    rid = st.selectbox(
        "Grid",
        [r["id"] for r in runs],
        index=default,
        format_func=lambda i: run_label(next(r for r in runs if r["id"] == i)),
    )
    run = store.get_run(rid)
    cells, corpus_doc = load(store, rid)

if not cells:
    st.info(f"Run {rid} has no finished cells yet ({run['status']}).")
    st.stop()

spec_d = run["spec"]
s = analysis.summarize(cells, spec_d.get("quality_margin_pct", 1.0))
t = tables(s)
if run["status"] != "completed":
    st.warning(
        f"Run {rid} is {run['status']}: {len(cells)} of {run['points_planned']} cells finished. "
        + (
            "Start the same preset again to resume it."
            if run["status"] in ("interrupted", "cancelled") and not (run.get("extra") or {}).get("resumed_in")
            else ""
        )
    )
st.caption(settings_text(spec_d, corpus_doc))

st.subheader("Published claims, checked here")
BADGES = {"measured": "green", "not_reproduced": "orange", "not_measured": "gray"}
for claim in s.claims:
    with st.container(border=True):
        st.markdown(f"**{claim.claim}** :{BADGES[claim.verdict]}-badge[{analysis.VERDICTS[claim.verdict]}]")
        st.markdown(claim.measured)
        st.caption(f"Criterion: {claim.criterion}")

st.subheader("By placement")
st.dataframe(t["placements"], hide_index=True, width="stretch")

for depth in spec_d["depths"]:
    st.plotly_chart(plots.divergence_map(s.rows, depth), width="stretch")
with st.expander("Divergence and failure by warmup"):
    st.dataframe(t["divergence"], hide_index=True, width="stretch")

st.subheader("Loss curves")
c1, c2, c3 = st.columns(3)
lr = c1.selectbox("Learning rate", spec_d["lrs"], index=len(spec_d["lrs"]) - 1, format_func=lambda x: f"{x:g}")
warmup = c2.selectbox("Warmup (steps)", spec_d["warmups"], index=0)
depth = c3.selectbox("Layers", spec_d["depths"], index=0)
st.plotly_chart(plots.loss_curves(cells, lr, warmup, depth), width="stretch")
st.plotly_chart(plots.grad_norm_curves(cells, lr, warmup, depth), width="stretch")
with st.expander("Final validation loss by setting"):
    st.dataframe(t["losses"], hide_index=True, width="stretch")

st.subheader("Gradient norms at initialisation")
st.plotly_chart(plots.init_profile(s.inits), width="stretch")
if t["depth_ratios"]:
    st.dataframe(t["depth_ratios"], hide_index=True, width="stretch")
else:
    st.caption("N/A: the grid profiled one depth only.")

st.subheader("Fine-tuning on one document")
if t["finetune"]:
    st.dataframe(t["finetune"], hide_index=True, width="stretch")
else:
    st.caption("N/A: no fine-tuning runs in this grid.")

st.subheader("RMSNorm vs LayerNorm quality")
if t["quality"]:
    st.dataframe(t["quality"], hide_index=True, width="stretch")
else:
    st.caption("N/A: no paired quality runs in this grid.")
