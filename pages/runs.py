"""Stored runs: status, progress and provenance."""

import pandas as pd
import streamlit as st

from profilers.store import Store, StoreError, default_db_path

st.title("Runs")
db = default_db_path()
st.caption(f"Store: `{db}`")

if not db.exists():
    st.info("No runs yet. Start one from a terminal: `python -m profilers run` (the quick CPU sweep).")
    st.stop()

try:
    with Store(db, readonly=True) as store:
        runs = store.list_runs()
except StoreError as e:
    st.error(str(e))
    st.stop()

if not runs:
    st.info("The store is empty. Start a sweep: `python -m profilers run`.")
    st.stop()

table = pd.DataFrame(
    [
        {
            "run": r["id"],
            "status": r["status"],
            "label": r["label"] or "",
            "device": r["spec"].get("device"),
            "created (UTC)": r["created_at"],
            "points ok": r["points_ok"],
            "failed": r["points_failed"],
            "skipped": r["points_skipped"],
            "planned": r["points_planned"],
            "copy GB/s": r["copy_gbps"],
        }
        for r in runs
    ]
)
st.dataframe(table, hide_index=True, use_container_width=True)
