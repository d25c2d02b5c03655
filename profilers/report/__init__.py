"""What people see: labels and number formats, plotly figures, and the self-contained HTML report."""
