"""NormScope dashboard: routes to the pages, nothing else."""

import streamlit as st

st.set_page_config(page_title="NormScope", page_icon="📏", layout="wide")

pages = [
    st.Page("pages/runs.py", title="Runs", icon="🗂️", default=True),
]
st.navigation(pages).run()
