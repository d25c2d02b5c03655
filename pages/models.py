"""Models: the norm implementation inside a real model's forward, training and fine-tuning step."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from pages._shared import devices, margin_input, pick_lab_run, start_job
from profilers.catalog import STEP_MARGIN_PCT
from profilers.labs.models import analysis, plots
from profilers.labs.models.spec import (
    DEFAULT_IMPLS,
    FAMILIES,
    MODEL_IMPLS,
    MODEL_MODES,
    SWAP_NORMS,
    ModelSweepSpec,
    check_config,
    describe_impl,
    shipped,
)
from profilers.report.labels import number
from profilers.spec import ROUND_PRESETS, SpecError

st.title("Models")
st.caption(
    "What a fine-tune pays for its norm: a transformers model (Llama, Qwen, Mistral, Gemma, BERT, ViT, or your "
    "own config.json) built with random weights, nothing downloaded; each of its norm modules swapped for another "
    "implementation, checked against the model's own in float64 (logits and gradients), then timed in "
    "interleaved rounds: forward, forward+backward, and an AdamW step."
)

run, points = pick_lab_run("models", "Model run")
if run is None:
    st.info("No model run yet: start one below (a 2-layer slice of a shipped config takes a few minutes on a CPU).")
else:
    try:
        shown = ModelSweepSpec.from_dict(run["spec"])
    except SpecError as e:
        st.error(f"Run {run['id']}'s spec cannot be read by this version: {e}")
        st.stop()
    info = next(((p.get("extra") or {}).get("model") for p in points if (p.get("extra") or {}).get("model")), {})
    facts = [f"**{shown.name}**", f"{shown.model['model_type']}", f"batch {shown.batch}", f"{shown.tokens:,} tokens"]
    if info:
        facts += [f"{info['parameters'] / 1e6:,.1f} M parameters", f"{info['norm_modules']} norm modules"]
        facts.append(", ".join(info.get("norm_classes") or []))
        if info.get("attention"):
            facts.append(f"attention: {info['attention']}")
    facts.append(f"a step trains {shown.tuning}")
    if info.get("trained_parameters") is not None and shown.lora:
        facts[-1] += f" ({info['trained_parameters'] / 1e6:,.2f} M parameters)"
    st.markdown(" · ".join(facts))
    st.subheader("The answer")
    margin = margin_input(STEP_MARGIN_PCT, "the model's call (forward, forward+backward or step)", "margin-models")
    for line in analysis.answers(points, margin):
        st.markdown(f"- {line}")
    st.plotly_chart(
        plots.savings_chart(analysis.savings(points), "What each norm implementation saves"), width="stretch"
    )
    claims = analysis.claim_check(points, margin)
    if claims:
        st.subheader("The fine-tuning claim")
        st.dataframe(pd.DataFrame([c.__dict__ for c in claims]), hide_index=True, width="stretch")
    rows = pd.DataFrame(analysis.table(points, margin))
    numeric = ("p50_ms", "saving_pct", "saving_lo_pct", "saving_hi_pct", "norm_share_pct", "peak_mib", "tokens_per_s")
    for c in numeric:
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    titles = dict(analysis.COLUMNS)
    shown = rows.astype(object)
    for c in numeric:  # formatted here: a missing reading reads N/A (its reason in the note), never None or 0
        shown[c] = [number(v) if pd.notna(v) else "N/A" for v in rows[c]]
    shown["note"] = rows["note"].fillna("")
    st.dataframe(shown.rename(columns=titles), hide_index=True, width="stretch")
    st.caption(
        "saving: % of the time with the model's own norm module (negative: slower), its 95% interval from rounds "
        "timed side by side; norm share: the norm modules' part of the candidate's time, from one profiled "
        "session; N/A cells say why in the note."
    )

st.subheader("New model sweep")
source = st.radio("Config", ["shipped", "my config.json"], horizontal=True)
config_ref: str | None = None
config_doc = None
if source == "shipped":
    names = list(shipped())
    config_ref = st.selectbox(
        "Model", names, index=names.index("qwen2.5-0.5b") if "qwen2.5-0.5b" in names else 0, key="mdl-config"
    )
    config_doc = json.loads(shipped()[config_ref].read_text(encoding="utf-8"))
else:
    upload = st.file_uploader("config.json from a model directory", type=["json"], key="mdl-upload")
    if upload is not None:
        try:
            config_doc = json.loads(upload.getvalue().decode("utf-8"))
            check_config(config_doc, upload.name)
            config_ref = upload.name
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            st.error(f"{upload.name} is not a JSON config ({e}): upload the config.json of a model directory")
            config_doc = None
        except SpecError as e:
            st.error(str(e))
            config_doc = None

if config_doc is not None and config_ref is not None:
    fam = FAMILIES[config_doc["model_type"]]
    depth = int(config_doc[fam.layer_key])
    c1, c2 = st.columns(2)
    with c1:
        device = st.selectbox("Device", devices(), key="mdl-device")
        cpu = device == "cpu"
        layers = st.number_input(f"Layers (of {depth})", 1, depth, min(depth, 2 if cpu else depth), key="mdl-layers")
        impls = st.multiselect(
            "Implementations",
            list(MODEL_IMPLS),
            default=list(DEFAULT_IMPLS),
            help="; ".join(f"{i}: {describe_impl(fam.norm, i, fam)}" for i in MODEL_IMPLS)
            + ". The model's own module is always timed: it is the baseline.",
            key="mdl-impls",
        )
        norms = st.multiselect(
            "Other norm types in its place",
            [n for n in SWAP_NORMS if n != fam.norm],
            help="architecture exploration: the norm modules replaced by another type where they sit",
            key="mdl-norms",
        )
    with c2:
        b1, b2 = st.columns(2)
        batch = b1.number_input("Batch", 1, 4096, 1, key="mdl-batch")
        seq = b2.number_input("Sequence length", 1, 1 << 20, 512, key="mdl-seq", disabled=fam.head == "image")
        dtypes = st.multiselect(
            "dtypes", ["float32", "bfloat16", "float16"], default=["float32" if cpu else "bfloat16"], key="mdl-dtypes"
        )
        modes = st.multiselect("Modes", list(MODEL_MODES), default=list(MODEL_MODES), key="mdl-modes")
        lora = st.number_input(
            "LoRA rank (0: every weight trained)",
            0,
            1024,
            0,
            key="mdl-lora",
            help="a step trains LoRA adapters (peft) on the attention and MLP projections, every other weight "
            "frozen: the common fine-tuning setup",
        )
        b3, b4 = st.columns(2)
        budget = b3.number_input("Budget ms / point", 5, 600_000, 2000 if cpu else 500, key="mdl-budget")
        accuracy = b4.selectbox("Comparisons", list(ROUND_PRESETS), index=0, key="mdl-rounds")
        label_text = st.text_input("Label (optional)", max_chars=200, key="mdl-label")
    spec = None
    try:
        rounds, target = ROUND_PRESETS[accuracy]
        spec = ModelSweepSpec(
            config=config_ref,
            model_config=config_doc,
            layers=int(layers) if int(layers) != depth else None,
            impls=tuple(impls),
            norms=tuple(norms),
            batch=int(batch),
            seq_len=int(seq),
            dtypes=tuple(dtypes),
            modes=tuple(modes),
            lora=int(lora),
            device=device,
            budget_ms=float(budget),
            rounds=rounds,
            ci_target_pct=target,
            label=label_text or None,
        )
    except SpecError as e:
        st.error(str(e))
    if spec is not None:
        st.markdown(
            f"**{len(spec.points())} points**: {spec.name}, {len(spec.candidates())} candidate(s) × "
            f"{len(spec.dtypes)} dtype(s) × {len(spec.modes)} mode(s), {spec.tokens:,} tokens per call; a step "
            f"trains {spec.tuning}."
        )
        if st.button("Start the model sweep", type="primary", key="mdl-start"):
            job = start_job(spec, ("model", "run"))
            if job is not None:
                st.session_state["last_job_pid"] = job.pid
                st.session_state["last_job_spec"] = str(job.spec_path)
                st.success(f"Started worker {job.pid}: follow it on the Run page; results appear here when it ends.")
