"""Run a sweep: build it, see whether it fits and how long it takes, start a worker, follow it, cancel it."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from pages._shared import (
    db_path,
    devices,
    gpu_metrics,
    local_calibration,
    may_write,
    open_store,
    quick_sweep_button,
    start_sweep,
    store_name,
)
from profilers import jobs, registry
from profilers.analysis.footprint import LIMIT_ENV, cap_available, shape_fit
from profilers.catalog import IMPLS as IMPLS_INFO
from profilers.catalog import MODES as MODES_INFO
from profilers.report.calibration import recommended_processes
from profilers.report.labels import HELP
from profilers.sensors import energy_capability
from profilers.sensors.live import snapshot
from profilers.spec import (
    CPU_ALLOCATORS,
    CPU_PAGES,
    DTYPES,
    ENERGY_WINDOWS_S,
    IMPLS,
    MODES,
    PRESETS,
    ROUND_PRESETS,
    VARIANTS,
    SpecError,
    SweepSpec,
    default_spec,
    parse_shape,
)

CONFIRM_ABOVE_S = 2 * 3600  # a sweep estimated longer than this needs a tick before Start

st.title("Run a sweep")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def endings() -> None:
    """Sweeps that were refused or killed recently, one line each; they survive a reload until dismissed."""
    for record in jobs.recent_endings(db_path()):
        c1, c2 = st.columns([8, 1])
        which = f"Run {record['run_id']}" if record.get("run_id") else f"The sweep started as pid {record['pid']}"
        verb = "was refused" if record["returncode"] == 2 else "ended"
        c1.error(f"{which} {verb}: {record['reason']}")
        if c2.button("Dismiss", key=f"dismiss-{record['path']}"):
            jobs.dismiss(record)
            st.rerun()


@st.fragment(run_every=1.0)
def live() -> None:
    """Every active run, from the store: any browser session sees the same progress."""
    with open_store() as store:
        active = jobs.active_runs(store)
        mine = st.session_state.get("last_job_pid")
        finished = jobs.run_of(store, mine) if mine else None
        empty = not store.list_runs()
        last_points = {r["id"]: store.points(r["id"])[-1:] for r in active if _counts(r) == "points"}
        cells_done = {r["id"]: len(store.artifacts(r["id"], "cell/")) for r in active if _counts(r) == "cells"}
    if empty and not mine:
        st.info(
            "Welcome to NormScope. Nothing is measured yet: build a sweep below, or start with the quick CPU "
            "sweep to see every page filled with numbers from this machine."
        )
        quick_sweep_button("quick-run")
    if not active and finished and finished["status"] != "running":
        icons = {"completed": "check_circle", "cancelled": "stop_circle", "interrupted": "warning", "failed": "error"}
        text = (
            f"Run {finished['id']} {finished['status']}: {finished['points_ok']} ok, {finished['points_flagged']} "
            f"imprecise or unstable, {finished['points_failed']} failed, {finished['points_skipped']} skipped."
            if _counts(finished) == "points"
            else f"Run {finished['id']} ({finished['kind']}) {finished['status']}."
        )
        if finished["status"] in ("interrupted", "failed") and finished.get("error"):
            st.error(f"{text} Why: {finished['error']}")
        else:
            st.info(text, icon=f":material/{icons.get(finished['status'], 'info')}:")
        lab = _lab(finished)
        st.page_link(lab.page, label=f"Open it on the {lab.title} page", icon=":material/monitoring:")
    if not active and mine and not finished:
        if jobs.ending_of(st.session_state.get("last_job_spec", "")):
            st.session_state.pop("last_job_pid", None)  # the ending is shown above, from its record
            st.rerun()
        st.caption("Starting the worker…")
    for run in active:
        _progress_card(run, last_points.get(run["id"]) or [], cells_done.get(run["id"]))


def _counts(run: dict) -> str:
    """What a run's progress counts, as its lab says: points, cells, or nothing."""
    return _lab(run).counts


def _lab(run: dict) -> registry.Lab:
    """A run's lab; a kind this version does not know (a store shared with a newer one) shows as a kernel sweep."""
    return registry.find(run.get("kind")) or registry.get("kernels")


def _progress_card(run: dict, last: list[dict], cells: int | None = None) -> None:
    lab = _lab(run)
    unit = lab.counts
    planned = run["points_planned"] or 1
    done = run["points_done"] if unit == "points" else (cells or 0)
    spread = (run.get("extra") or {}).get("progress")  # a run over fresh processes, while they run
    if spread:
        done = spread["points_done"]
        unit = f"points ({planned // spread['of']} in each of {spread['of']} processes)"
    started = pd.Timestamp(run["created_at"]).timestamp()
    elapsed = max(0.0, time.time() - started)
    eta = elapsed / done * (planned - done) if done else None
    device = run["spec"].get("device", "cpu")
    fleet = jobs.fleet_of(run)
    with st.container(border=True):
        where = f"`{device}` of node {fleet['node']}" if fleet else f"`{device}`"
        st.markdown(f"**Run {run['id']}** ({lab.noun}) on {where} — {run['label'] or 'no label'}")
        if fleet:
            st.caption(
                f"device {fleet['slot'] + 1} of {fleet['devices']} of cluster sweep {fleet['uid'][:8]} (driven from "
                f"{fleet['driver']}): counted over the groups given to this device so far; Cancel stops every device"
            )
        if spread:
            st.caption(
                f"process {spread['process']} of {spread['of']}, one after the other: its points are stored when "
                "every process has finished (a cancel keeps none)"
            )
        if unit:
            st.progress(
                min(done / planned, 1.0),
                text=f"{done} / {planned} {unit} · {_duration(elapsed)} elapsed"
                + (f" · about {_duration(eta)} left" if eta is not None else ""),
            )
        else:
            st.caption(f"running · {_duration(elapsed)} elapsed (this lab reports no count until it ends)")
        st.page_link(lab.page, label=f"Follow it on the {lab.title} page", icon=":material/arrow_forward:")
        if last:
            p = last[0]
            st.caption(
                f"last: {p['variant']} {p['impl']} {p['dtype']} {p['tokens']:,}×{p['hidden']:,} {p['mode']} → "
                + (f"p50 {p['p50_us']:,.1f} µs" if p["p50_us"] is not None else f"{p['status']}: {p['error']}")
            )
        if st.button("Cancel", key=f"cancel-{run['id']}", icon=":material/stop_circle:", disabled=not may_write()):
            jobs.cancel(run)
            st.toast(
                f"Cancelling run {run['id']}; "
                + (
                    "no points are kept (its processes had not all finished)."
                    if spread
                    else "finished points are kept."
                )
            )
        if str(device).startswith("cuda"):
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
    gpu_metrics(s["gpus"][0])


def available_memory(device: str) -> tuple[int | None, str]:
    """Memory a sweep may use on ``device``, read without torch (psutil; NVML on GPUs)."""
    if device == "cpu":
        import psutil

        return cap_available(int(psutil.virtual_memory().available), "available host memory")
    from profilers.sensors.nvml import Nvml

    nv = Nvml()
    try:
        gpus = nv.gpus()
        index = int(device.split(":")[1])
        if index < len(gpus):
            total, used = gpus[index].memory_total_bytes(), gpus[index].memory_used_bytes()
            if total.ok and used.ok:
                return cap_available(total.value - used.value, f"free on {device}")
    finally:
        nv.close()
    return None, f"free memory on {device} unknown (NVML)"


endings()
live()

st.subheader("New sweep")
left, right = st.columns(2)
with left:
    where = st.radio(
        "Where",
        ["this machine", "Ray cluster"],
        horizontal=True,
        help="Ray cluster: the sweep's groups spread over the cluster's devices (each GPU, or each node's CPUs), "
        "one group per device at a time; one run per device, all in this store (which every node must reach: "
        "PostgreSQL for nodes on several hosts).",
    )
    cluster = None
    if where == "Ray cluster":
        cluster = st.text_input(
            "Cluster address",
            "auto",
            help="auto: the cluster this host joined (`ray start --address …`); local: start one here; or the "
            "head's HOST:PORT",
        ).strip()
        device = st.selectbox("Device on every node", ["cpu", "cuda"])
    else:
        device = st.selectbox("Device", devices())
    defaults = default_spec(device)
    source = st.radio("Shapes from", ["model preset", "custom shapes"], horizontal=True)
    if source == "model preset":
        preset = st.selectbox("Model", list(PRESETS), format_func=lambda k: PRESETS[k].description)
        shapes = PRESETS[preset].shapes()
        st.caption("tokens×hidden: " + ", ".join(f"{t:,}×{h:,}" for t, h in shapes))
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
        default=[i for i in defaults.impls if device.split(":")[0] in IMPLS_INFO[i].devices],
        help=" · ".join(f"{name}: {info.help}" for name, info in IMPLS_INFO.items()),
    )
    label = st.text_input("Label (optional)", max_chars=200)
with right:
    dtypes = st.multiselect("dtypes", DTYPES, default=list(defaults.dtypes))
    modes = st.multiselect(
        "Modes", MODES, default=list(defaults.modes), help=" · ".join(f"{k}: {v}" for k, v in MODES_INFO.items())
    )
    c1, c2, c3 = st.columns(3)
    threads = c1.number_input("CPU threads (0 = all usable)", 0, 512, 0) if device == "cpu" else 0
    budget = c2.number_input("Budget ms / point", 5, 60_000, int(defaults.budget_ms))
    warmup = c3.number_input("Warmup ms", 1, 60_000, int(defaults.warmup_ms))
    accuracy = st.radio(
        "Comparisons",
        list(ROUND_PRESETS),
        index=list(ROUND_PRESETS).index("quick" if device == "cpu" else "default"),
        horizontal=True,
        format_func=lambda k: f"{k} ({ROUND_PRESETS[k][0]} rounds, ±{ROUND_PRESETS[k][1]:g}%)",
        help="Candidates of one shape are timed in interleaved rounds; rounds are added (up to twice as many), "
        "for the candidates whose ratio's 95% interval is still wider than this, until every one is this narrow.",
    )
    if device == "cpu" and cluster is None:
        a1, a2, a3 = st.columns(3)
        allocator = a1.radio(
            "CPU allocator",
            list(CPU_ALLOCATORS),
            horizontal=True,
            help=" · ".join(f"{k}: {v}" for k, v in CPU_ALLOCATORS.items()),
        )
        cpu_pages = a2.radio(
            "CPU pages",
            list(CPU_PAGES),
            horizontal=True,
            help=" · ".join(f"{k}: {v}" for k, v in CPU_PAGES.items()),
        )
        p1, p2 = st.columns(2)
        with open_store() as store:
            calibrated, why = recommended_processes(local_calibration(store), 5.0)
        as_calibrated = p1.toggle(
            "Processes as calibrated",
            disabled=calibrated is None,
            help=f"This machine's calibration recommends {why}." if calibrated else why[:1].upper() + why[1:] + ".",
        )
        processes = a3.number_input(
            "Processes",
            1,
            16,
            calibrated if as_calibrated and calibrated else 1,
            help="Run the sweep in this many fresh processes, one after the other, and merge them: each process "
            "lands its own memory placement, and the 95% intervals resample the processes too (with two or three "
            "processes, that part rests on that few draws). About this many times the time; the points are "
            "stored when every process has finished.",
        )
        spread_s = p2.number_input(
            "Seconds between processes",
            0,
            600,
            0,
            disabled=processes < 2,
            help="Start the processes this many seconds apart, so one run meets the machine in several of its "
            "states; the run's rerun intervals then come from its own processes.",
        )
        cache = "warm"
    elif device == "cpu":
        allocator, cpu_pages, processes, spread_s, cache = "reuse", "huge", 1, 0, "warm"
    else:
        allocator, cpu_pages, processes, spread_s = "reuse", "huge", 1, 0
        cache = st.radio(
            "Cache state",
            ["cold", "warm"],
            horizontal=True,
            help="cold: L2 flushed before each call (a layer meeting fresh data); warm: back to back",
        )
    capability = energy_capability(device.split(":")[0])
    e1, e2 = st.columns(2)
    energy_on = e1.toggle(
        "Measure energy",
        disabled=not capability.ok,
        help=capability.reason if not capability.ok else f"with {capability.value}",
    )
    accurate = e2.toggle(
        f"Accurate energy ({ENERGY_WINDOWS_S['accurate']:g} s windows)",
        disabled=not energy_on,
        help=f"quick: {ENERGY_WINDOWS_S['quick']:g} s windows",
    )
    if not capability.ok:
        st.caption(f"Energy: N/A on this machine — {capability.reason}")
    t1, t2 = st.columns(2)
    trace_on = t1.toggle("Record kernels (torch.profiler)")
    save_traces = t2.toggle("Keep Chrome traces (Perfetto)", disabled=not trace_on, help="one JSON file per point")

spec = None
try:
    if source == "custom shapes":
        parts = [s for s in text.split(",") if s.strip()]
        if not parts:
            raise SpecError("no shapes: write TOKENSxHIDDEN, e.g. 4096x768")
        shapes = [parse_shape(s) for s in parts]
    if cluster == "":
        raise SpecError("no cluster address: give auto, local or the head's HOST:PORT")
    rounds, target = ROUND_PRESETS[accuracy]
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
        rounds=rounds,
        ci_target_pct=target,
        cache_state=cache,
        cpu_allocator=allocator,
        cpu_pages=cpu_pages,
        processes=int(processes),
        spread_s=float(spread_s) if processes > 1 else 0.0,
        energy=energy_on,
        energy_window_s=ENERGY_WINDOWS_S["accurate" if accurate else "quick"],
        trace=trace_on,
        save_traces=save_traces,
        label=label or None,
        preset=preset,
        ray=cluster,
    )
except SpecError as e:
    st.error(str(e))

if spec is not None:
    available, what = available_memory(device)
    fit = shape_fit(
        [(p.variant, p.impl, p.mode, p.dtype, p.tokens, p.hidden) for p in spec.points()], available or 1 << 62, what
    )
    too_big = [s for s, (_, why) in fit.items() if why]
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "shape (tokens×hidden)": f"{t:,}×{h:,}",
                    "memory needed (GiB, estimate)": f"{need / 2**30:.2f}",
                    "fits?": "no: these points will be skipped" if why else "yes",
                }
                for (t, h), (need, why) in fit.items()
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        f"Against {available / 2**30:.1f} GiB {what} (90% of it may be used; cap it with {LIMIT_ENV})."
        if available
        else what
    )
    n = len(spec.points())
    est = jobs.estimate_seconds(spec)
    all_too_big = len(too_big) == len(fit)
    groups = len({(p.tokens, p.hidden, p.dtype, p.mode) for p in spec.points()})
    st.markdown(
        (
            f"**{n} points** in {groups} group(s), about **{_duration(est)}** on one device, less as the groups "
            "spread over the cluster's devices."
            if spec.ray
            else f"**{n} points**, about **{_duration(est)}** on this machine."
        )
        + (f" {len(too_big)} shape(s) do not fit and will be skipped." if too_big and not all_too_big else "")
    )
    confirmed = True
    if est > CONFIRM_ABOVE_S:
        confirmed = st.checkbox(f"Yes, run for about {_duration(est)}", help="a long sweep: tick to confirm")
    if all_too_big:
        st.error("No shape of this sweep fits in memory: use fewer tokens, a smaller hidden size or a narrower dtype.")
    st.caption(f"{HELP['noisy'].capitalize()}. The worker runs apart from this page: closing the tab does not stop it.")
    if st.button("Start", type="primary", key="start", disabled=all_too_big or not confirmed):
        try:
            pid = start_sweep(spec)
        except SpecError as e:
            st.error(str(e))
            pid = None
        if pid:
            st.success(f"Started worker {pid}. Progress shows above; closing this tab does not stop it.")
            st.rerun()
    if device == "cpu" and not spec.ray:
        st.info(
            "This sweep measures the CPU this dashboard runs on: the browser and the server compete with it. "
            "Visits taken while the machine was busy are re-measured, then flagged."
        )

st.caption(f"Workers write to `{store_name()}`; the server never measures in its own process.")
