"""Runs: list, label, export, import, delete; each run's provenance."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from pages._shared import READ_ONLY, may_write, open_store, run_label, runs_or_welcome
from profilers.analysis.method import cpu_memory_lines
from profilers.report.labels import na
from profilers.store import StoreError, reference
from profilers.store.exchange import export_run, import_run

st.title("Runs")

with st.expander("Import a run exported on another machine"):
    up = st.file_uploader(
        "Run export (.json from `python -m profilers export`)", type=["json"], disabled=not may_write()
    )
    if up is not None and st.button("Import", key="do-import", disabled=not may_write()):
        try:
            doc = json.loads(up.getvalue().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            st.error(f"{up.name} is not JSON ({e}): export a run with `python -m profilers export`")
        else:
            try:
                with open_store() as store:
                    new_id = import_run(store, doc, source=f"import:{up.name}")
                st.success(f"Imported {up.name} as run {new_id}.")
            except StoreError as e:
                st.error(str(e))

with open_store() as store:
    runs = runs_or_welcome(
        store, "No runs yet: start one on the Run page, or run the quick CPU sweep now.", "quick-runs", kind=None
    )

st.dataframe(
    pd.DataFrame(
        [
            {
                "run": r["id"],
                "kind": r.get("kind", "kernels"),
                "status": r["status"],
                "label": r["label"] or "",
                "device": r["spec"].get("device"),
                "created (UTC)": r["created_at"],
                "finished": r["finished_at"] or "",
                "ok": r["points_ok"],
                "imprecise or unstable": r["points_flagged"],
                "failed": r["points_failed"],
                "skipped": r["points_skipped"],
                "planned": r["points_planned"],
                "copy GB/s": na(r["copy_gbps"], "{:,.1f}"),
                "source": r["source"],
            }
            for r in runs
        ]
    ),
    hide_index=True,
    width="stretch",
)

by_id = {r["id"]: r for r in runs}
rid = st.selectbox("Run", list(by_id), format_func=lambda i: run_label(by_id[i]))
run = by_id[rid]
if run["status"] in ("interrupted", "cancelled", "failed"):
    st.warning(f"Run {rid} is {run['status']}: {run['error'] or 'no reason recorded'}. Its finished points are kept.")

protected = reference.is_reference(run) or not may_write()
if not may_write():
    st.info(READ_ONLY, icon=":material/lock:")
elif protected:
    st.info(
        f"Run {rid} is a reference run shipped with NormScope ({run['source'][len(reference.PREFIX) :]}): "
        "read-only, it cannot be relabelled or deleted.",
        icon=":material/lock:",
    )
c1, c2 = st.columns(2)
with c1, st.form("label"):
    new_label = st.text_input("Label", run["label"] or "", max_chars=200, disabled=protected)
    if st.form_submit_button("Save label", disabled=protected):
        with open_store() as store:
            store.set_label(rid, new_label or None)
        st.session_state["label_saved"] = rid
        st.rerun()
    if st.session_state.get("label_saved") == rid:
        st.success("Label saved.")
with c2:
    with open_store() as store:
        export = json.dumps(export_run(store, rid), indent=1)
    st.download_button("Export run (JSON)", export, file_name=f"normscope-run{rid}.json", mime="application/json")
    confirm = st.checkbox(
        f"I want to delete run {rid} and its {run['points_done']} points", key=f"confirm-{rid}", disabled=protected
    )
    if st.button("Delete run", disabled=not confirm or protected, key=f"delete-{rid}"):
        if run["status"] == "running":
            st.error("This run is still measuring: cancel it on the Run page first.")
        else:
            with open_store() as store:
                store.delete_run(rid)
            st.success(f"Deleted run {rid}.")
            st.rerun()

st.subheader("Provenance")
with open_store() as store:
    full = store.get_run(rid)
m, v = full["machine"], full["versions"]
gpu = m.get("gpu") or {}
st.markdown(
    f"- **Machine**: {m.get('cpu_model')} ({m.get('cpu_cores_physical')} cores), "
    f"{na(m.get('ram_bytes') and m['ram_bytes'] / 2**30, '{:.0f} GiB RAM')}, host `{m.get('hostname')}`\n"
    f"- **GPU**: {gpu.get('name', 'none')}"
    + (
        f", driver {gpu.get('driver_version')}, CUDA {gpu.get('cuda_runtime')}, "
        f"power limit {na(gpu.get('power_limit_w'), '{:.0f} W', gpu.get('power_limit_w_reason'))}"
        if gpu
        else ""
    )
    + f"\n- **Software**: Python {v.get('python')}, torch {v.get('torch')}, triton {na(v.get('triton'), '{}')}, "
    f"liger {na(v.get('liger_kernel'), '{}')}\n"
    f"- **NormScope**: commit `{v.get('normscope_commit') or 'N/A'}`"
    + (" (uncommitted changes)" if v.get("normscope_dirty") else "")
    + f"\n- **Copy bandwidth** {na(full['copy_gbps'], '{:,.1f} GB/s')}, idle power "
    f"{na(full['idle_power_w'], '{:.0f} W', 'not measured')}"
    + "".join(f"\n- **{field}**: {text}" for field, text in cpu_memory_lines(full))
)
with st.expander("Full provenance (JSON)"):
    st.json({"spec": full["spec"], "machine": m, "versions": v, "sensors": full["sensors"]})
