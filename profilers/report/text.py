"""Text for the terminal: the CLI's progress lines."""

from __future__ import annotations

from typing import Any

from ..spec import Point


def progress_line(done: int, total: int, p: Point, res: Any) -> str:
    """One line per point: what was measured and the headline numbers (or why not)."""
    head = f"[{done:>{len(str(total))}}/{total}] {p.describe()}"
    if res is None:
        return head + " …"
    if res.status == "skipped":
        return f"{head}  skipped: {res.error}"
    if res.status == "failed":
        return f"{head}  FAILED: {res.error}"
    extra = f", {res.gbps:.1f} GB/s" if res.gbps else ""
    if res.roofline_pct is not None:
        extra += f", {res.roofline_pct:.0f}% of copy"
    if res.compile_s is not None:
        extra += f", compile {res.compile_s:.1f} s"
    if res.energy_mj_per_call is not None:
        extra += f", {res.energy_mj_per_call:.3g} mJ/call at {res.energy_mean_power_w:.0f} W"
    if res.kernels_per_call is not None:
        extra += f", {res.kernels_per_call:g} {'kernels' if res.device.startswith('cuda') else 'ops'}/call"
    noisy = " (noisy)" if res.noisy else ""
    return f"{head}  p50 {res.p50_us:,.1f} µs{extra}{noisy}"
