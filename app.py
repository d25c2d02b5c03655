"""NormScope dashboard: the shell. Routes to the pages and draws the shared sidebar.

The core's pages are listed here; each lab's page comes from the lab registry (``profilers/labs``), first in
its navigation section.
"""

import streamlit as st

from pages._shared import sidebar
from profilers import registry

st.set_page_config(page_title="NormScope", page_icon=":material/straighten:", layout="wide")

CORE_PAGES = {
    "Measure": [
        st.Page("pages/run.py", title="Run", icon=":material/play_circle:", default=True),
        st.Page("pages/hardware.py", title="Hardware", icon=":material/memory:"),
    ],
    "Analyse": [
        st.Page("pages/kernels.py", title="Kernels", icon=":material/account_tree:"),
        st.Page("pages/recommend.py", title="Recommend", icon=":material/recommend:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    ],
    "Architecture": [],
    "Deployment": [],
    "Share": [
        st.Page("pages/reports.py", title="Reports", icon=":material/description:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
    ],
}
sections: dict[str, list] = {name: [] for name in CORE_PAGES}
for lab in registry.LABS:
    sections.setdefault(lab.nav, []).append(st.Page(lab.page, title=lab.title, icon=lab.icon))
navigation = st.navigation({name: pages + CORE_PAGES.get(name, []) for name, pages in sections.items()})
sidebar()
navigation.run()
