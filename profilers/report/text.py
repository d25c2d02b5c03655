"""Text for the terminal: the CLI's progress lines."""

from __future__ import annotations

from typing import Any

from ..spec import Point
from .labels import number


def progress_line(done: int, total: int, p: Point, res: Any) -> str:
    """One line per point: what was measured and the headline numbers (or why not)."""
    head = f"[{done:>{len(str(total))}}/{total}] {p.describe()}"
    if res is None:
        return head + " …"
    if res.status == "skipped":
        return f"{head}  skipped: {res.error}"
    if res.status == "failed":
        return f"{head}  FAILED: {res.error}"
    extra = f", {number(res.gbps)} GB/s" if res.gbps else ""
    if res.roofline_pct is not None:
        level = f" ({res.roofline_level})" if res.roofline_level else ""
        extra += f", {res.roofline_pct:.0f}% of copy{level}"
    if res.ratio is not None and res.ratio_baseline and res.ratio_baseline != f"{p.variant} {p.impl}":
        extra += f", ×{res.ratio:.3f} [{res.ratio_lo:.3f}, {res.ratio_hi:.3f}] vs {res.ratio_baseline}"
        rerun = res.extra.get("rerun") or {}
        if rerun.get("between_sd_log") is not None:
            extra += f", a rerun: [{rerun['lo']:.3f}, {rerun['hi']:.3f}]"
            other = rerun.get("other_state")
            if other:
                extra += f" here, [{other['lo']:.3f}, {other['hi']:.3f}] in the machine's other memory state"
    if res.compile_s is not None:
        extra += f", compile {res.compile_s:.1f} s"
    if res.energy_mj_per_call is not None:
        extra += f", {number(res.energy_mj_per_call)} mJ/call at {res.energy_mean_power_w:.0f} W"
    if res.kernels_per_call is not None:
        extra += f", {res.kernels_per_call:g} {'kernels' if res.device.startswith('cuda') else 'ops'}/call"
    flags = [f for f in ("noisy" if res.noisy else None, res.status if res.status != "ok" else None) if f]
    if res.extra.get("busy"):
        flags.append("machine busy")
    tail = f" ({', '.join(flags)})" if flags else ""
    return f"{head}  p50 {number(res.p50_us)} µs{extra}{tail}"


def block_progress_line(done: int, total: int, p: Any, res: Any) -> str:
    """One line per block point: the configuration, its p50, its ratio to the baseline and the norm's share."""
    head = f"[{done:>{len(str(total))}}/{total}] {p.describe()}"
    if res is None:
        return head + " …"
    if res.status in ("skipped", "failed"):
        return f"{head}  {'skipped' if res.status == 'skipped' else 'FAILED'}: {res.error}"
    extra = ""
    if res.ratio is not None and res.ratio_baseline != p.key:
        extra += f", ×{res.ratio:.3f} [{res.ratio_lo:.3f}, {res.ratio_hi:.3f}] vs {res.ratio_baseline}"
    share = ((res.extra.get("components") or {}).get("share_pct") or {}).get("norm")
    if share is not None:
        extra += f", norm {share:.1f}% of it"
    tail = f" ({res.status})" if res.status != "ok" else ""
    return f"{head}  p50 {number(res.p50_us)} µs{extra}{tail}"
