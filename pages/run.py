"""Run a sweep: build it, see its size and time, start a worker, follow it live, cancel it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._shared import db_path, devices, open_store, quick_sweep_button, start_sweep
from profilers import jobs
from profilers.catalog import IMPLS as IMPLS_INFO
from profilers.catalog import MODES as MODES_INFO
from profilers.sensors.live import snapshot
from profilers.spec import (
    DTYPES,
    ENERGY_WINDOWS_S,
    IMPLS,
    MODES,
    PRESETS,
    VARIANTS,
    SpecError,
    SweepSpec,
    default_spec,
    parse_shape,
)

st.title("Run a sweep")


@st.fragment(run_every=1.0)
def live() -> None:
    """Every active run, from the store: any browser session sees the same progress."""
    with open_store() as store:
        active = jobs.active_runs(store)
        mine = st.session_state.get("last_job_pid")
        finished = jobs.run_of(store, mine) if mine else None
        empty = not store.list_runs()
    if empty and not mine:
        st.info(
            "Welcome to NormScope. Nothing is measured yet: build a sweep below, or start with the quick CPU "
            "sweep to see every page filled with numbers from this machine."
        )
        quick_sweep_button("quick-run")
    if not active and finished and finished["status"] != "running":
        icons = {"completed": "check_circle", "cancelled": "stop_circle", "interrupted": "warning", "failed": "error"}
        st.info(
            f"Run {finished['id']} {finished['status']}: {finished['points_ok']} ok, "
            f"{finished['points_failed']} failed, {finished['points_skipped']} skipped.",
            icon=f":material/{icons.get(finished['status'], 'info')}:",
        )
        st.page_link("pages/results.py", label="Open the results", icon=":material/monitoring:")
    if not active and mine and not finished:
        st.caption("Starting the worker…")
        tail = jobs.log_tail(Path(st.session_state.get("last_job_log", "")))
        if tail:
            st.code(tail)
    for run in active:
        planned = run["points_planned"] or 1
        done = run["points_done"]
        with st.container(border=True):
            st.markdown(f"**Run {run['id']}** on `{run['spec']['device']}` — {run['label'] or 'no label'}")
            st.progress(min(done / planned, 1.0), text=f"{done} / {planned} points")
            with open_store() as store:
                last = store.points(run["id"])[-1:] if done else []
            if last:
                p = last[0]
                st.caption(
                    f"last: {p['variant']} {p['impl']} {p['dtype']} {p['tokens']}×{p['hidden']} {p['mode']} → "
                    + (f"p50 {p['p50_us']:,.1f} µs" if p["p50_us"] is not None else f"{p['status']}: {p['error']}")
                )
            if st.button("Cancel", key=f"cancel-{run['id']}", icon=":material/stop_circle:"):
                jobs.cancel(run)
                st.toast(f"Cancelling run {run['id']}; finished points are kept.")
            if run["spec"]["device"].startswith("cuda"):
                gpu_strip()


def gpu_strip() -> None:
    from profilers.sensors.host import Host
    from profilers.sensors.nvml import Nvml

    nv = Nvml()
    s = snapshot(nv, Host())
    nv.close()
    if not s["gpus"]:
        st.caption(f"GPU telemetry N/A ({s['nvml']})")
        return
    g = s["gpus"][0]
    c = st.columns(4)
    c[0].metric("power (instant)", f"{g['power_instant_w']:.0f} W" if g["power_instant_w"] is not None else "N/A")
    c[1].metric("utilization", f"{g['utilization_pct']}%" if g["utilization_pct"] is not None else "N/A")
    c[2].metric("temperature", f"{g['temperature_c']} °C" if g["temperature_c"] is not None else "N/A")
    used = g["memory_used_bytes"]
    c[3].metric("memory", f"{used / 2**30:.1f} GiB" if used is not None else "N/A")


live()

st.subheader("New sweep")
left, right = st.columns(2)
with left:
    device = st.selectbox("Device", devices())
    defaults = default_spec(device)
    source = st.radio("Shapes from", ["model preset", "custom shapes"], horizontal=True)
    if source == "model preset":
        preset = st.selectbox("Model", list(PRESETS), format_func=lambda k: PRESETS[k].description)
        shapes = PRESETS[preset].shapes()
        st.caption("tokens×hidden: " + ", ".join(f"{t}×{h}" for t, h in shapes))
    else:
        preset = None
        text = st.text_input(
            "Shapes (tokens×hidden, comma separated)", ", ".join(f"{t}x{h}" for t, h in defaults.shapes)
        )
        shapes = []
    variants = st.multiselect("Variants", VARIANTS, default=list(defaults.variants))
    impls = st.multiselect(
        "Implementations",
        IMPLS,
        default=[i for i in defaults.impls if i in IMPLS_INFO and device.split(":")[0] in IMPLS_INFO[i].devices],
        help=" · ".join(f"{name}: {info.help}" for name, info in IMPLS_INFO.items()),
    )
with right:
    dtypes = st.multiselect("dtypes", DTYPES, default=list(defaults.dtypes))
    modes = st.multiselect(
        "Modes", MODES, default=list(defaults.modes), help=" · ".join(f"{k}: {v}" for k, v in MODES_INFO.items())
    )
    c1, c2, c3 = st.columns(3)
    threads = c1.number_input("CPU threads (0 = all)", 0, 512, 0) if device == "cpu" else 0
    budget = c2.number_input("Budget ms / point", 5, 60_000, int(defaults.budget_ms))
    warmup = c3.number_input("Warmup ms", 1, 60_000, int(defaults.warmup_ms))
    e1, e2 = st.columns(2)
    energy_on = e1.toggle("Measure energy", help="NVML energy counter on GPUs, RAPL on CPUs when readable")
    accurate = e2.toggle(
        f"Accurate energy ({ENERGY_WINDOWS_S['accurate']:g} s windows)",
        disabled=not energy_on,
        help=f"quick: {ENERGY_WINDOWS_S['quick']:g} s windows",
    )
    trace_on = st.toggle("Record kernels (torch.profiler)")
    label = st.text_input("Label (optional)", max_chars=200)

spec = None
try:
    if source == "custom shapes":
        parts = [s for s in text.split(",") if s.strip()]
        if not parts:
            raise SpecError("no shapes: write TOKENSxHIDDEN, e.g. 4096x768")
        shapes = [parse_shape(s) for s in parts]
    spec = SweepSpec(
        variants=tuple(variants),
        impls=tuple(impls),
        shapes=tuple(shapes),
        dtypes=tuple(dtypes),
        modes=tuple(modes),
        device=device,
        threads=int(threads) or None,
        budget_ms=float(budget),
        warmup_ms=float(warmup),
        energy=energy_on,
        energy_window_s=ENERGY_WINDOWS_S["accurate" if accurate else "quick"],
        trace=trace_on,
        label=label or None,
        preset=preset,
    )
except SpecError as e:
    st.error(str(e))

if spec is not None:
    n = len(spec.points())
    st.markdown(f"**{n} points**, about **{jobs.estimate_seconds(spec):,.0f} s** on this machine.")
    if st.button("Start", type="primary", key="start"):
        try:
            pid = start_sweep(spec)
        except SpecError as e:
            st.error(str(e))
            pid = None
        if pid:
            st.success(f"Started worker {pid}. Progress shows above; closing this tab does not stop it.")
            st.rerun()

st.caption(f"Workers write to `{db_path()}`; the server never measures in its own process.")
