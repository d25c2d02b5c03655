"""NormScope dashboard: the shell. Routes to the pages and draws the shared sidebar."""

import streamlit as st

from pages._shared import sidebar

st.set_page_config(page_title="NormScope", page_icon=":material/straighten:", layout="wide")

navigation = st.navigation(
    {
        "Measure": [
            st.Page("pages/run.py", title="Run", icon=":material/play_circle:", default=True),
            st.Page("pages/hardware.py", title="Hardware", icon=":material/memory:"),
        ],
        "Analyse": [
            st.Page("pages/results.py", title="Results", icon=":material/monitoring:"),
            st.Page("pages/kernels.py", title="Kernels", icon=":material/account_tree:"),
            st.Page("pages/recommend.py", title="Recommend", icon=":material/recommend:"),
            st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        ],
        "Architecture": [
            st.Page("pages/architecture.py", title="Architecture", icon=":material/view_in_ar:"),
            st.Page("pages/stability.py", title="Stability", icon=":material/ssid_chart:"),
        ],
        "Deployment": [
            st.Page("pages/numerics.py", title="Numerics", icon=":material/calculate:"),
            st.Page("pages/drift.py", title="Drift", icon=":material/insights:"),
        ],
        "Share": [
            st.Page("pages/reports.py", title="Reports", icon=":material/description:"),
            st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
        ],
    }
)
sidebar()
navigation.run()
