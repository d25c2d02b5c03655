"""Reports: one self-contained HTML file (and a PDF where Chromium is installed) for a client."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from pages._shared import default_runs, open_store, remember_runs, run_label, runs_or_welcome
from profilers.analysis.equivalence import MARGIN_MAX_PCT
from profilers.catalog import KERNEL_MARGIN_PCT, STEP_MARGIN_PCT
from profilers.report import document

st.title("Reports")
st.caption(
    "One HTML file with the answer, the charts, the method and the provenance. It opens offline: "
    "plotly is inlined and nothing is fetched from the network."
)

with open_store() as store:
    runs = runs_or_welcome(store, "Nothing to report yet: measure something first.", "quick-reports", kind=None)
    by_id = {r["id"]: r for r in runs}
    chosen = st.multiselect(
        "Runs in the report",
        list(by_id),
        default=default_runs(runs, "reports", n=0),  # the runs picked on the other pages follow
        format_func=lambda i: run_label(by_id[i]),
        key="runs-reports",
    )
    remember_runs(chosen)
    c_title, c_margin = st.columns([3, 1])
    title = c_title.text_input("Heading (optional)", max_chars=200)
    margin = c_margin.number_input(
        "Equivalence margin (±%)",
        min_value=0.1,
        max_value=MARGIN_MAX_PCT,
        value=None,
        step=0.5,
        format="%.1f",
        placeholder=f"default: {KERNEL_MARGIN_PCT:g} kernel, {STEP_MARGIN_PCT:g} step",
        key="report-margin",
        help=(
            "The margin every verdict in the report is decided at: inside it two candidates are equivalent. "
            f"Empty: {KERNEL_MARGIN_PCT:g}% of a kernel's time, {STEP_MARGIN_PCT:g}% of a block's or a step's."
        ),
    )
    if not chosen:
        st.info("Pick at least one run.")
        st.stop()
    if st.button("Build the report", type="primary"):
        with st.spinner("Building…"):
            st.session_state["report_html"] = document.build(store, chosen, title or None, margin)
            st.session_state["report_runs"] = list(chosen)
            st.session_state["report_margin"] = margin

html_text = st.session_state.get("report_html")
if (
    html_text
    and st.session_state.get("report_runs") == list(chosen)
    and st.session_state.get("report_margin") == margin
):
    name = "normscope-report-runs-" + "-".join(str(i) for i in chosen)
    st.success(f"Report ready: {len(html_text) / 2**20:.1f} MiB.")
    c1, c2 = st.columns(2)
    c1.download_button("Download HTML", html_text, file_name=f"{name}.html", mime="text/html")
    if document.chromium() is None:
        c2.caption("PDF: unavailable (needs Chromium: apt-get install chromium). The HTML is complete without it.")
    elif c2.button("Make a PDF"):
        with tempfile.TemporaryDirectory() as tmp, st.spinner("Printing with Chromium…"):
            src, pdf = Path(tmp) / "r.html", Path(tmp) / "r.pdf"
            src.write_text(html_text, encoding="utf-8")
            why = document.to_pdf(src, pdf)
            if why:
                st.error(why)
            else:
                st.session_state["report_pdf"] = pdf.read_bytes()
    if st.session_state.get("report_pdf"):
        c2.download_button(
            "Download PDF", st.session_state["report_pdf"], file_name=f"{name}.pdf", mime="application/pdf"
        )
