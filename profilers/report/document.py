"""A self-contained HTML report a client opens offline: the answer, the charts, the method, provenance.

One file: plotly's JavaScript is inlined once, every figure is drawn from JSON
embedded in the page, and nothing is requested from the network. All text that a
user could have typed (labels, run names, errors) is HTML-escaped, and figure JSON
is made safe to sit inside a <script> element.
"""

from __future__ import annotations

import html
import importlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..analysis import recommend, roofline
from ..analysis.noise import NOISY_RULE
from ..catalog import TOLERANCES, label
from ..store import Store
from ..store.exchange import atomic_write
from . import plots
from .labels import COLUMNS, POINT_TABLE, cell

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


_POINT_KEY_COLUMNS = [
    (k, COLUMNS[k]) for k in ("run_id", "variant", "impl", "dtype", "tokens", "hidden", "mode", "status")
]


def esc(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _script_safe(text: str) -> str:
    """JSON that cannot close the <script> element it sits in."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class _Figures:
    def __init__(self) -> None:
        self.n = 0

    def div(self, fig: go.Figure) -> str:
        self.n += 1
        fid = f"fig{self.n}"
        payload = _script_safe(fig.to_json())
        return (
            f'<div class="fig"><div id="{fid}" style="height:{int(fig.layout.height or 450)}px"></div></div>'
            f'<script>(function(){{var f={payload};Plotly.newPlot("{fid}",f.data,f.layout,'
            f'{{"displaylogo":false,"responsive":true}});}})();</script>'
        )


def _num(v: Any, fmt: str = "{:,.4g}") -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "N/A"
    return fmt.format(v) if isinstance(v, (int, float)) else esc(v)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for _, title in columns)
    body = []
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            cells.append(f"<td>{esc(v)}</td>" if isinstance(v, str) else f'<td class="num">{esc(cell(key, v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _answer(points: list[dict[str, Any]], run: dict[str, Any]) -> str:
    spec = run["spec"]
    shapes = [tuple(s) for s in spec.get("shapes", [])]
    if not shapes:
        return ""
    tokens, hidden = max(shapes, key=lambda s: s[0] * s[1])
    dtype = (spec.get("dtypes") or ["float32"])[0]
    out = []
    for mode in [m for m in ("fwd", "fwdbwd") if m in spec.get("modes", [])] or spec.get("modes", [])[:1]:
        t = recommend.Target(
            tokens=tokens,
            hidden=hidden,
            dtype=dtype,
            mode=mode,
            variants=tuple(spec["variants"]),
        )
        r = recommend.rank(points, t, device=spec.get("device", "cpu"))
        use = "inference (fwd)" if mode == "fwd" else "training (fwd+bwd)" if mode == "fwdbwd" else mode
        head = f"{esc(use)}, {tokens}×{hidden}, {esc(dtype)}, run {run['id']}"
        if r.missing:
            out.append(f'<p class="warn"><b>{head}</b>: {esc(r.missing)}</p>')
            continue
        cls = "answer" if len(r.tiers[0]) == 1 else "answer tie"
        lines = "".join(f"<li>{esc(line)}</li>" for line in r.lines[:6])
        note = f'<p class="muted">{esc(r.shape_note)}</p>' if r.shape_note else ""
        out.append(f'<div class="{cls}"><b>{head}</b>: {esc(r.headline)}<ul>{lines}</ul>{note}</div>')
    return "".join(out)


def _method(run: dict[str, Any]) -> str:
    spec, m = run["spec"], run["machine"]
    method = {"cpu": "cpu_blocks: fixed thread count, warmup, then blocks of calls (≥ 1 ms each) until the budget"}
    timing = method.get(spec.get("device", "cpu").split(":")[0]) or (
        "cuda_graph: CUDA-graph replay (launch-free)"
        if spec.get("cuda_graph")
        else "cuda_event_flush: one CUDA event pair per call, 256 MB L2 flush before each call"
    )
    tol = ", ".join(f"{k}: max rel {a:.0e}, rel L2 {b:.0e}" for k, (a, b) in TOLERANCES.items())
    energy = (
        f"NVML/RAPL counters around loops of ≥ {spec.get('energy_window_s')} s, {spec.get('energy_repeats')} repeats"
        if spec.get("energy")
        else "not measured in this run"
    )
    return (
        f"<ul><li>Timing: {esc(timing)}; warmup {esc(spec.get('warmup_ms'))} ms, budget {esc(spec.get('budget_ms'))} ms"
        f" per point; threads {esc(spec.get('threads') or m.get('cpu_cores_logical'))}.</li>"
        f"<li>Statistics: p20, p50, p80 and IQR of the raw samples; noisy when {esc(NOISY_RULE)}.</li>"
        f"<li>Correctness gate before timing, against a float64 reference: {esc(tol)}.</li>"
        f"<li>Energy: {esc(energy)}; idle power {_num(run.get('idle_power_w'), '{:.0f} W')}.</li>"
        f"<li>Copy bandwidth (roofline) measured in the same run: {_num(run.get('copy_gbps'), '{:,.1f} GB/s')}.</li>"
        f"<li>CPU allocator: {esc(m.get('cpu_allocator', 'N/A'))}.</li></ul>"
    )


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


def _charts(df: pd.DataFrame, runs: list[dict[str, Any]], points: list[dict[str, Any]], figs: _Figures) -> list[str]:
    parts = ["<h2>Charts</h2>", figs.div(plots.latency(df, "tokens"))]
    if df["hidden"].nunique() > 1:
        parts.append(figs.div(plots.latency(df, "hidden")))
    parts.append(figs.div(plots.bandwidth(df, {r["id"]: r["copy_gbps"] for r in runs})))
    parts.append(figs.div(plots.speedup_heatmap(df)))
    parts.append(figs.div(plots.memory(df)))
    energy_fig = plots.energy(df)
    if energy_fig is not None:
        parts.append(figs.div(energy_fig))
    traced = [p for p in points if (p.get("extra") or {}).get("kernels")][:8]
    if traced:
        breakdowns = [
            (f"{label(p['variant'], p['impl'])} {p['tokens']}×{p['hidden']} {p['mode']}", p["extra"]["kernels"])
            for p in traced
        ]
        parts.append(figs.div(plots.kernels(breakdowns)))
    return parts


def _claims(points: list[dict[str, Any]]) -> list[str]:
    claims = []
    for dtype in sorted({p["dtype"] for p in points}):
        for mode in sorted({p["mode"] for p in points}):
            claims += [dict(c.__dict__, dtype=dtype, mode=mode) for c in recommend.claims_check(points, dtype, mode)]
    if not claims:
        return []
    columns = [
        ("claim", "claim"),
        ("impl", COLUMNS["impl"]),
        ("dtype", COLUMNS["dtype"]),
        ("mode", COLUMNS["mode"]),
        ("measured", "measured here"),
        ("verdict", "verdict"),
    ]
    return ["<h2>Published claims, checked here</h2>", _table(claims, columns)]


def _noise_and_failures(points: list[dict[str, Any]]) -> list[str]:
    failed = [p for p in points if p["status"] == "failed"]
    skipped = [p for p in points if p["status"] == "skipped"]
    noisy = [p for p in points if p.get("noisy")]
    parts = [
        "<h2>Noise and failures</h2>",
        f"<p>{len(noisy)} of {len(points)} points are noisy ({esc(NOISY_RULE)}) and drawn hollow; {len(failed)} "
        f"failed (never timed); {len(skipped)} were skipped as unsupported.</p>",
    ]
    if failed or skipped:
        parts.append(_table(failed + skipped, [*_POINT_KEY_COLUMNS, ("error", COLUMNS["error"])]))
    return parts


_ALL_POINT_COLUMNS = [(k, COLUMNS[k]) for k in POINT_TABLE]


def lab_section(store: Store, run: dict[str, Any], figs: _Figures) -> list[str]:
    """A lab run's section: ``profilers/report/section_<kind>.py`` has ``section(store, run, figs)``, which
    returns HTML parts (figures through ``figs.div``, user text through ``esc``)."""
    module = importlib.import_module(f"{__package__}.section_{run['kind']}")
    return module.section(store, run, figs)


def build(store: Store, run_ids: Sequence[int], title: str | None = None) -> str:
    """The report for ``run_ids`` as one HTML string."""
    import plotly.offline

    runs = [store.get_run(i) for i in run_ids]
    points = store.points(run_ids)
    labels = {r["id"]: esc(f"run {r['id']}" + (f" ({r['label']})" if r.get("label") else "")) for r in runs}
    df = plots.points_frame(points, labels)
    figs = _Figures()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = title or "Normalization layers measured on " + ", ".join(
        sorted({(r["machine"].get("gpu") or {}).get("name") or r["machine"].get("cpu_model", "?") for r in runs})
    )
    parts = [
        f"<h1>{esc(heading)}</h1><p class='muted'>NormScope report · generated {now} · "
        f"{len(points)} points from {len(runs)} run(s)</p>",
        "<h2>The answer</h2>",
    ]
    kernel_runs = [r for r in runs if r.get("kind", "kernels") == "kernels"]
    for r in kernel_runs:
        parts.append(_answer([p for p in points if p["run_id"] == r["id"]], r) or "<p>No points.</p>")
    for r in runs:
        if r.get("kind", "kernels") != "kernels":
            parts += lab_section(store, r, figs)
    parts += _claims(points)
    if not df.empty:
        parts += _charts(df, runs, points, figs)
    parts += _noise_and_failures(points)
    parts += ["<h2>All points</h2>", _table(points, _ALL_POINT_COLUMNS), "<h2>Method</h2>"]
    parts += [f"<h3>Run {r['id']}</h3>{_method(r)}" for r in runs]
    parts.append(f"<details><summary>Bytes-moved model</summary><pre>{esc(roofline.__doc__)}</pre></details>")
    parts.append("<h2>Provenance</h2>")
    parts += [f"<h3>Run {r['id']}</h3>{_provenance(r)}" for r in runs]
    js = _script_safe(plotly.offline.get_plotlyjs())
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(heading)}</title><style>{CSS}</style><script>{js}</script></head>"
        f"<body><main>{''.join(parts)}</main></body></html>"
    )


def write(store: Store, run_ids: Sequence[int], path: Path, title: str | None = None) -> Path:
    text = build(store, run_ids, title)
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
