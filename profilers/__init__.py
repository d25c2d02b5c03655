"""NormScope's profiling engine: measure normalization layers honestly.

This package never imports streamlit; plotly appears only in plots.py and report.py.
"""

__version__ = "0.1.0"
