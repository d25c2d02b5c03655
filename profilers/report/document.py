"""A self-contained HTML report a client opens offline: the answer, the charts, the method, provenance.

One file: plotly's JavaScript is inlined once, every figure is drawn from JSON
embedded in the page, and nothing is requested from the network. All text that a
user could have typed (labels, run names, errors) is HTML-escaped, and figure JSON
is made safe to sit inside a <script> element.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import registry
from ..analysis import roofline
from ..store import Store
from ..store.exchange import atomic_write
from .html import Figures, esc, script_safe

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;background:#f9fafb}
main{max-width:1100px;margin:0 auto;padding:32px 24px 64px}
h1{font-size:30px;margin:0 0 4px}h2{margin-top:40px;border-bottom:1px solid #e5e7eb;padding-bottom:6px}
.muted{color:#6b7280}.answer{background:#ecfdf5;border:1px solid #a7f3d0;padding:14px 18px;border-radius:8px}
.tie{background:#eff6ff;border-color:#bfdbfe}.warn{background:#fffbeb;border:1px solid #fde68a;padding:10px 14px;
border-radius:8px}table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}th{background:#f3f4f6}td.num{text-align:right}
.fig{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:16px 0;padding:4px}
pre{background:#fff;border:1px solid #e5e7eb;padding:10px;overflow:auto;font-size:12px}
"""


def _provenance(run: dict[str, Any]) -> str:
    m, v = run["machine"], run["versions"]
    gpu = m.get("gpu") or {}
    rows = [
        ("run", f"{run['id']} ({run['status']}), created {run['created_at']}, finished {run.get('finished_at')}"),
        ("label", run.get("label") or ""),
        ("source", run.get("source", "local")),
        ("machine", f"{m.get('cpu_model')} · {m.get('cpu_cores_physical')} cores · host {m.get('hostname')}"),
        (
            "GPU",
            f"{gpu.get('name')} · driver {gpu.get('driver_version')} · CUDA {gpu.get('cuda_runtime')} · "
            f"power limit {gpu.get('power_limit_w')} W"
            if gpu
            else "none",
        ),
        (
            "software",
            f"Python {v.get('python')} · torch {v.get('torch')} · triton {v.get('triton')} · "
            f"liger {v.get('liger_kernel')}",
        ),
        (
            "NormScope",
            f"commit {v.get('normscope_commit')}" + (" (uncommitted changes)" if v.get("normscope_dirty") else ""),
        ),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(val)}</td></tr>" for k, val in rows)
    spec = esc(json.dumps(run["spec"], indent=1, sort_keys=True))
    return f"<table>{body}</table><details><summary>Sweep spec</summary><pre>{spec}</pre></details>"


def lab_sections(store: Store, lab: registry.Lab, runs: list[dict[str, Any]], figs: Figures) -> list[str]:
    """A lab's part of the report. Its section module has ``section(store, run, figs)`` for one run, or
    ``sections(store, runs, figs)`` where its runs are read together; either returns HTML parts (figures
    through ``figs.div``, user text through ``html.esc``)."""
    module = lab.part("section")
    if hasattr(module, "sections"):
        return module.sections(store, runs, figs)
    return [part for run in runs for part in module.section(store, run, figs)]


def _method(lab: registry.Lab, run: dict[str, Any]) -> str:
    """How the run measured, as its lab states it (``method(run)`` in its section module)."""
    method = getattr(lab.part("section"), "method", None)
    if method is None:
        return f"<p>A {esc(lab.kind)} run: its settings and method are stated in its section above.</p>"
    return method(run)


def build(store: Store, run_ids: Sequence[int], title: str | None = None, margin_pct: float | None = None) -> str:
    """The report for ``run_ids`` as one HTML string: each lab's section for its runs, then method and provenance.
    Verdicts are decided at ``margin_pct`` (± %), else at each lab's default (a kernel's 2%, a step's 1%)."""
    import plotly.offline

    runs = [store.get_run(i) for i in run_ids]
    n_points = sum(r.get("points_done") or 0 for r in runs)
    figs = Figures(margin_pct)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = title or "Normalization layers measured on " + ", ".join(
        sorted({(r["machine"].get("gpu") or {}).get("name") or r["machine"].get("cpu_model", "?") for r in runs})
    )
    parts = [
        f"<h1>{esc(heading)}</h1><p class='muted'>NormScope report · generated {now} · "
        f"{n_points} points from {len(runs)} run(s)</p>",
    ]
    lab_of = {r["id"]: registry.find(r.get("kind")) for r in runs}
    for lab in registry.LABS:  # in the registry's order: the kernel sweep's answer first
        of_lab = [r for r in runs if lab_of[r["id"]] is lab]
        if of_lab:
            parts += lab_sections(store, lab, of_lab, figs)
    parts += [
        f"<p class='warn'>Run {r['id']} is a {esc(r.get('kind'))} run, which this version of NormScope does not "
        "know: update NormScope to read it.</p>"
        for r in runs
        if lab_of[r["id"]] is None
    ]
    parts.append("<h2>Method</h2>")
    parts += [f"<h3>Run {r['id']}</h3>{_method(lab_of[r['id']], r)}" for r in runs if lab_of[r["id"]]]
    parts.append(f"<details><summary>Bytes-moved model</summary><pre>{esc(roofline.__doc__)}</pre></details>")
    parts.append("<h2>Provenance</h2>")
    parts += [f"<h3>Run {r['id']}</h3>{_provenance(r)}" for r in runs]
    js = script_safe(plotly.offline.get_plotlyjs())
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(heading)}</title><style>{CSS}</style><script>{js}</script></head>"
        f"<body><main>{''.join(parts)}</main></body></html>"
    )


def write(
    store: Store, run_ids: Sequence[int], path: Path, title: str | None = None, margin_pct: float | None = None
) -> Path:
    text = build(store, run_ids, title, margin_pct)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def to_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120) -> str | None:
    """Print the report to PDF through headless Chromium; returns the reason when it cannot."""
    exe = chromium()
    if exe is None:
        return "PDF export needs Chromium (Debian: apt-get install chromium); the HTML report is complete without it"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=10000",
            f"--print-to-pdf={pdf_path}",
            "--no-pdf-header-footer",
            html_path.resolve().as_uri(),
        ]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return f"Chromium did not finish printing within {timeout_s:.0f} s"
    if p.returncode != 0 or not pdf_path.exists():
        return f"Chromium could not print the report: {(p.stderr or '').strip().splitlines()[-1:]}"
    return None
