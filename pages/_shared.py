"""Helpers every page shares: the store, the sidebar, N/A formatting, starting sweeps."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from profilers import jobs
from profilers.report.labels import na
from profilers.spec import SpecError, SweepSpec, default_cpu_spec
from profilers.store import Store, StoreError, default_db_path, locate, reference


def _route_through_app() -> None:
    """Send a page that Streamlit ran on its own back through app.py's st.navigation.

    With a folder named pages/ beside app.py, Streamlit runs a deep-linked page by
    itself (its legacy multipage mode) until app.py has called st.navigation once
    in this server. Clearing that flag and rerunning routes the same URL through
    the shell instead, so the first visit after a restart looks like every other.
    The flag is Streamlit's own (``PagesManager.uses_pages_directory``): the range
    this is verified on is pinned in requirements.txt and a Chromium test opens a
    deep link as a fresh server's first request. Where the flag does not exist the
    page simply renders in Streamlit's own navigation.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()


_route_through_app()


def db_path() -> str:
    """The store's address (a file path or a database URL: never shown, it may hold a password)."""
    return default_db_path()


def store_name() -> str:
    """The store as a page may show it: the path, or the URL with its password masked."""
    return locate(db_path()).display


def local_dir() -> Path:
    """This machine's folder beside the store (profiles, job files)."""
    return locate(db_path()).local_dir


def open_store() -> Store:
    """The user's store (opening it marks runs of dead workers interrupted); st.error on failure.

    Once per browser session it also brings in the reference runs shipped under data/reference/.
    """
    try:
        store = Store(db_path())
    except StoreError as e:
        st.error(str(e))
        st.stop()
        raise
    st.session_state["store_writable"] = store.can_write
    if store.can_write and not st.session_state.get("reference_synced"):
        st.session_state["reference_synced"] = True
        _, problems = reference.sync(store)
        for problem in problems:
            st.warning(f"Reference run skipped: {problem}")
    return store


@st.cache_resource(show_spinner=False)
def devices() -> list[str]:
    """cpu plus every CUDA device torch can see, found without loading torch in the server."""
    return jobs.visible_devices()


def local_calibration(store: Any) -> dict[str, Any] | None:
    """The newest completed calibration of this host in ``store`` (found without loading torch), or None."""
    host = socket.gethostname()
    for run in store.list_runs(kind="calibration"):
        if run["status"] == "completed" and (run.get("machine") or {}).get("hostname") == host:
            doc = store.artifact(run["id"], "calibration")
            if doc:
                return doc
    return None


def sidebar() -> None:
    with st.sidebar:
        if not may_write():
            st.caption(":material/lock: read-only")
        st.caption(f"Store: `{store_name()}`")
        st.caption("Devices: " + " · ".join(devices()))


def run_label(r: dict[str, Any]) -> str:
    text = f"run {r['id']} · {r['status']} · {r['spec'].get('device', '?')} · {r['created_at'][:16].replace('T', ' ')}"
    if reference.is_reference(r):
        gpu = (r.get("machine") or {}).get("gpu") or {}
        text += f" · REFERENCE ({gpu.get('name') or 'read-only'})"
    elif r.get("source", "local") != "local":
        text += " · imported"
    return text + (f" · {r['label']}" if r.get("label") else "")


READ_ONLY = (
    "This store is read-only here (a viewer's database role, or a file this server may not write): runs can be "
    "viewed, compared, exported and reported; starting, cancelling, importing, relabelling and deleting runs "
    "need a role that may write."
)


def may_write() -> bool:
    """Whether this dashboard may change the store (as the last ``open_store`` found it)."""
    if "store_writable" not in st.session_state:
        open_store().close()
    return bool(st.session_state["store_writable"])


def refuse_if_read_only() -> bool:
    """True (after an ``st.error``) when the store is read-only: the caller does not start or change anything."""
    if may_write():
        return False
    st.error("Not started: " + READ_ONLY)
    return True


def start_job(spec: Any, command: tuple[str, ...] = ("run",)) -> jobs.Job | None:
    """A worker for ``spec``, or None (said) when the store is read-only here."""
    if refuse_if_read_only():
        return None
    return jobs.start(spec, db_path(), command=command)


def start_sweep(spec: SweepSpec) -> int | None:
    """Start a worker for ``spec``; returns its pid. The worker is the one judge of whether the sweep can run
    (device busy, nothing fits): a refusal is recorded with the job and shown on the Run page, also after a
    reload, until dismissed."""
    job = start_job(spec)
    if job is None:
        return None
    st.session_state["last_job_pid"] = job.pid
    st.session_state["last_job_log"] = str(job.log_path)
    st.session_state["last_job_spec"] = str(job.spec_path)
    return job.pid


def pick_lab_run(kind: str, label: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A lab page's run picker: the chosen run of ``kind`` (the newest first) and its points; (None, []) when
    the store holds none."""
    with open_store() as store:
        runs = store.list_runs(kind=kind)
        by_id = {r["id"]: r for r in runs}
        rid = st.selectbox(label, list(by_id), format_func=lambda i: run_label(by_id[i])) if runs else None
        return (by_id[rid], store.points(rid)) if rid else (None, [])


def runs_or_welcome(store: Store, message: str, key: str, kind: str | None = "kernels") -> list[dict[str, Any]]:
    """The stored runs of one kind; with none measured here, explain what to do and offer the quick sweep.

    Shipped reference runs still show (read-only) beside that offer; with nothing at all, the page stops.
    """
    runs = store.list_runs(kind=kind)
    if not any(r.get("source", "local") == "local" for r in runs):
        if runs:  # only shipped or imported runs: say so, and offer to measure this machine
            st.info(
                "Nothing measured on this machine yet: the runs below are reference or imported runs from other "
                "machines (read-only). Start a sweep on the Run page to add your own."
            )
        else:
            st.info(message)
        if kind in ("kernels", None):
            quick_sweep_button(key)
    if not runs:
        st.stop()
    return runs


def default_runs(runs: list[dict[str, Any]], page_key: str, n: int = 1) -> list[int]:
    """What a page opens on: the runs last picked in this session (on any page), else the newest completed
    run with the most timed points (a real sweep beats a 4-point test), else the newest."""
    ids = {r["id"] for r in runs}
    remembered = [i for i in st.session_state.get("runs_picked", []) if i in ids]
    if remembered:
        return remembered[:n] if n else remembered
    done = [r for r in runs if r["status"] == "completed" and r["points_ok"] + r["points_flagged"] > 0]
    if done:
        local = [r for r in done if r.get("source", "local") == "local"] or done
        return [max(local, key=lambda r: (r["points_done"], r["id"]))["id"]]
    return [runs[0]["id"]]


def remember_runs(ids: list[int]) -> None:
    """The runs a user picked follow them to the other pages (this browser session)."""
    if ids:
        st.session_state["runs_picked"] = list(ids)


def quick_sweep_button(key: str) -> None:
    """The empty-state offer: one click runs the quick CPU sweep."""
    spec = default_cpu_spec(label="quick CPU sweep")
    st.caption(
        f"The quick CPU sweep measures {', '.join(spec.variants)} × {', '.join(spec.impls)} at "
        f"{', '.join(f'{t}×{h}' for t, h in spec.shapes)} in fp32: {len(spec.points())} points, "
        f"about {jobs.estimate_seconds(spec):.0f} s."
    )
    if st.button("Run the quick CPU sweep", key=key, type="primary", disabled=not may_write()):
        try:
            if start_sweep(spec):
                st.switch_page("pages/run.py")
        except SpecError as e:
            st.error(str(e))


def start_lab_job(spec: Any, command: tuple[str, ...], key: str) -> None:
    """Start a lab's worker (``python -m profilers COMMAND``) and remember it in this browser session under
    ``key`` so ``lab_live_panel`` can show its start-up log; then rerun to show the panel."""
    job = start_job(spec, command)
    if job is None:
        return
    st.session_state[f"{key}_pid"] = job.pid
    st.session_state[f"{key}_log"] = str(job.log_path)
    st.success(f"Started worker {job.pid}; progress shows above. Closing this tab does not stop it.")
    st.rerun()


def lab_live_panel(
    kind: str, key: str, status: Callable[[dict[str, Any]], None], starting: str = "Starting the worker …"
) -> None:
    """A lab page's live panel (call it inside an ``st.fragment``): this session's worker while it starts
    (its log when it fails), every run of ``kind`` still measuring with ``status(run)`` and a Cancel button,
    and one rerun of the page when this session's run has finished so its results show."""
    with open_store() as store:
        active = [r for r in jobs.active_runs(store) if r.get("kind") == kind]
        mine = st.session_state.get(f"{key}_pid")
        started = jobs.run_of(store, mine) if mine else None
    if mine and (not started or started["status"] == "failed"):
        if not started:
            st.caption(starting)
        tail = jobs.log_tail(Path(st.session_state.get(f"{key}_log", "")))
        if tail:
            st.code(tail)
    for run in active:
        with st.container(border=True):
            status(run)
            if st.button(
                "Cancel", key=f"cancel-{key}-{run['id']}", icon=":material/stop_circle:", disabled=not may_write()
            ):
                jobs.cancel(run)
                st.toast(f"Cancelling run {run['id']}.")
    if started and started["status"] != "running" and st.session_state.get(f"{key}_seen") != started["id"]:
        st.session_state[f"{key}_seen"] = started["id"]
        st.rerun()


def gpu_metrics(g: dict[str, Any]) -> None:
    """One GPU's live readings (a ``sensors.live.snapshot`` entry) as metrics, each N/A with its reason on hover:
    the Hardware page's and a GPU run's progress card."""
    used = g["memory_used_bytes"]
    c = st.columns(6)
    c[0].metric("power (instant)", na(g["power_instant_w"], "{:.0f} W"), help=g.get("power_instant_w_reason"))
    c[1].metric("power (1 s average)", na(g["power_avg_1s_w"], "{:.0f} W"), help=g.get("power_avg_1s_w_reason"))
    c[2].metric("utilization", na(g["utilization_pct"], "{}%"), help=g.get("utilization_pct_reason"))
    c[3].metric("temperature", na(g["temperature_c"], "{} °C"), help=g.get("temperature_c_reason"))
    c[4].metric("SM clock", na(g["sm_clock_mhz"], "{} MHz"), help=g.get("sm_clock_mhz_reason"))
    c[5].metric("memory used", na(used and used / 2**30, "{:.1f} GiB"), help=g.get("memory_used_bytes_reason"))


def margin_input(default_pct: float, what: str, key: str) -> float:
    """The margin of practical equivalence a page's verdicts are taken at (± %), the user's to set."""
    from profilers.analysis.equivalence import MARGIN_MAX_PCT

    return float(
        st.number_input(
            "Equivalence margin (±%)",
            min_value=0.1,
            max_value=MARGIN_MAX_PCT,
            value=float(default_pct),
            step=0.5,
            format="%.1f",
            key=key,
            help=(
                f"A difference smaller than this share of {what} is not worth acting on: two candidates whose whole "
                "95% interval lies inside ±margin are equivalent (two one-sided tests); beyond it one is faster or "
                "slower; an interval that crosses it is undecided."
            ),
        )
    )
