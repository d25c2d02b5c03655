"""NormScope dashboard: the shell. Routes to the pages and draws the shared sidebar.

The core's pages are listed here; each lab's page comes from the lab registry (``profilers/registry.py``),
first in its navigation section.
"""

import streamlit as st

from pages._shared import sidebar
from profilers import registry

st.set_page_config(page_title="NormScope", page_icon=":material/straighten:", layout="wide")

CORE_PAGES = {  # section → (page, title, icon)
    "Measure": [
        ("pages/run.py", "Run", ":material/play_circle:"),
        ("pages/hardware.py", "Hardware", ":material/memory:"),
    ],
    "Analyse": [
        ("pages/kernels.py", "Kernels", ":material/account_tree:"),
        ("pages/recommend.py", "Recommend", ":material/recommend:"),
        ("pages/compare.py", "Compare", ":material/compare_arrows:"),
    ],
    "Architecture": [],
    "Deployment": [],
    "Share": [
        ("pages/reports.py", "Reports", ":material/description:"),
        ("pages/runs.py", "Runs", ":material/folder_open:"),
    ],
}
core = {path for pages in CORE_PAGES.values() for path, _, _ in pages}
sections: dict[str, list] = {name: [] for name in CORE_PAGES}
for lab in registry.LABS:
    if lab.page not in core:  # a lab shown on a core page (the calibration: Hardware) adds no entry
        sections.setdefault(lab.nav, []).append(st.Page(lab.page, title=lab.title, icon=lab.icon))
for name, pages in CORE_PAGES.items():
    sections[name] += [st.Page(p, title=t, icon=i, default=p == "pages/run.py") for p, t, i in pages]
navigation = st.navigation(sections)
sidebar()
navigation.run()
