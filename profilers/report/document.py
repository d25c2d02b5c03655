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
from ..analysis.method import allocator_sentence, allocator_short, method_of
from ..analysis.noise import NOISY_RULE
from ..catalog import RTOL, WRONG_REL_L2, label
from ..store import Store
from ..store.exchange import atomic_write
from . import plots
from .labels import COLUMNS, POINT_TABLE, cell, number

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


def _machine_name(run: dict[str, Any]) -> str:
    gpu = (run.get("machine") or {}).get("gpu") or {}
    return gpu.get("name") or (run.get("machine") or {}).get("cpu_model") or run["spec"].get("device", "?")


USES = {"fwd": "inference (fwd)", "fwdbwd": "training (fwd+bwd)", "bwd": "backward only"}


def questions(runs: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions a report answers: one per machine × dtype × use that its kernel runs measured, each at
    the largest shape timed for it (so the heading names the shape the answer is about)."""
    by_run = {r["id"]: r for r in runs}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for p in points:
        run = by_run[p["run_id"]]
        if run.get("kind", "kernels") != "kernels" or p["status"] not in ("ok", "imprecise", "unstable"):
            continue
        # runs measured with different CPU allocators answer separately: their times are not comparable
        method = allocator_short(run) or ""
        groups.setdefault((_machine_name(run), p["dtype"], p["mode"], method), []).append(p)
    out = []
    for (machine, dtype, mode, method), pts in sorted(groups.items()):
        tokens, hidden = max({(p["tokens"], p["hidden"]) for p in pts}, key=lambda s: s[0] * s[1])
        run_ids = sorted({p["run_id"] for p in pts})
        device = by_run[run_ids[0]]["spec"].get("device", "cpu")
        variants = tuple(dict.fromkeys(p["variant"] for p in pts))
        out.append(
            {
                "machine": machine,
                "method": method,
                "dtype": dtype,
                "mode": mode,
                "tokens": tokens,
                "hidden": hidden,
                "device": device,
                "runs": run_ids,
                "target": recommend.Target(tokens=tokens, hidden=hidden, dtype=dtype, mode=mode, variants=variants),
            }
        )
    return out


def _answers(runs: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[str]:
    """One answer per question, ranked as the Recommend page ranks (clean points; ties by 95% interval)."""
    parts = []
    for q in questions(runs, points):
        pts = [p for p in points if p["run_id"] in q["runs"]]
        r = recommend.rank(pts, q["target"], device=q["device"])
        runs_text = ", ".join(f"run {i}" for i in q["runs"])
        head = (
            f"{esc(USES.get(q['mode'], q['mode']))} in {esc(q['dtype'])} on {esc(q['machine'])}, "
            f"{q['tokens']:,}×{q['hidden']:,} ({esc(runs_text)}"
            + (f"; {esc(q['method'])}" if q["method"] else "")
            + ")"
        )
        if r.missing:
            parts.append(f'<p class="warn"><b>{head}</b>: no clean measurement to rank: {esc(r.missing)}</p>')
            continue
        cls = "answer" if len(r.tiers[0]) == 1 else "answer tie"
        lines = "".join(f"<li>{esc(line)}</li>" for line in r.lines[:6])
        left = (
            "<p class='muted'>Not ranked: "
            + esc("; ".join(f"{c.name} ({c.status}: {c.reason})" for c in r.left_out[:6]))
            + "</p>"
            if r.left_out
            else ""
        )
        parts.append(f'<div class="{cls}"><b>{head}</b>: {esc(r.headline)}<ul>{lines}</ul>{left}</div>')
    return parts or ["<p>No timed kernel points to rank.</p>"]


def _method(run: dict[str, Any]) -> str:
    kind = run.get("kind", "kernels")
    if kind not in ("kernels", "blocks"):
        return f"<p>A {esc(kind)} run: its settings and method are stated in its section above.</p>"
    spec, extra = run["spec"], run.get("extra") or {}
    how = method_of(run)
    timers = {
        "cpu_blocks": "fixed thread count, warmup, then blocks of calls (≥ 1 ms each) until the budget; warm cache",
        "cuda_event_flush_queued": "one CUDA event pair per call, L2 flushed before each call, each call queued "
        "behind a spin kernel so the host's launch stays out of it (cold cache)",
        "cuda_event_flush": "one CUDA event pair per call, L2 flushed before each call, timed as launched: a "
        "launch slower than the kernels counts (cold cache)",
        "cuda_event_queued": "one CUDA event pair per block of back-to-back calls queued behind a spin kernel "
        "(warm cache)",
        "cuda_event": "one CUDA event pair per block of back-to-back calls, launched at the CPU's pace (warm cache)",
        "cuda_graph": "CUDA-graph replay (launch-free)",
    }
    energy = (
        f"NVML/RAPL counters around loops of ≥ {spec.get('energy_window_s')} s, {spec.get('energy_repeats')} repeats"
        if spec.get("energy")
        else "not measured in this run"
    )
    ladder = extra.get("ladder")
    ceiling = (
        "a copy ladder measured in the same run ("
        + ", ".join(f"{number(ws / 2**20)} MiB: {number(g)} GB/s" for ws, g in ladder["rungs"])
        + "); each point is judged against the ladder at its own working set, labelled with the cache level"
        if ladder
        else f"one copy probe in the same run: {_num(run.get('copy_gbps'), '{:,.1f} GB/s')}"
    )
    gate = (
        f"Correctness gate before timing, against a float64 reference: tolerance = assert_close rtol of the dtype "
        f"({', '.join(f'{k} {v:g}' for k, v in RTOL.items())}) plus an allowance for fp32 accumulation that grows "
        f"with log2 of the elements summed; beyond it but right in float32, or a value past the dtype's range "
        f"rounded to the infinity of its sign: imprecise (timed, flagged); any other NaN/Inf, "
        f"rel L2 > {WRONG_REL_L2} or wrong in float32: wrong (not timed)."
        if kind == "kernels"
        else "Correctness gate before timing: the whole block (forward, and every gradient where timed) against a "
        "float64 copy with the same weights, within the dtype's block tolerance (a block rounds its activations "
        "at several sequential ops); beyond it: imprecise (timed, flagged); NaN/Inf or wrong: not timed."
    )
    items = [
        f"Timing: {how['timer']}: {timers.get(how['timer'], '')}; warmup {how['warmup']}, budget {how['budget']} "
        f"per point; threads {how['threads']}.",
        f"Comparisons: {how['rounds']}; ratios are medians of per-round ratios with a bootstrap 95% interval "
        "over rounds (the expanded percentile interval, which holds for few rounds); a difference is measurable "
        "only when its interval excludes 1.",
        f"Statistics: p20, p50, p80 and IQR of the clean samples; noisy when {NOISY_RULE}.",
        gate,
        f"Energy: {energy}; idle power {_num(run.get('idle_power_w'), '{:.0f} W')}.",
    ]
    if kind == "kernels":
        items.append(f"Roofline: effective GB/s (minimum-traffic model) as % of {ceiling}.")
    if allocator_sentence(run):
        items.append(allocator_sentence(run) + ".")
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


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
    subtitle = " · ".join(dict.fromkeys(s for r in runs if (s := allocator_short(r)))) or None
    parts = ["<h2>Charts</h2>"]
    pairs = {(v, i) for v, i in zip(df["variant"], df["impl"])}
    if ("layernorm", "native") in pairs and ("rmsnorm", "native") in pairs:
        fig, _ = plots.head_to_head(df, ("layernorm", "native"), ("rmsnorm", "native"), subtitle)
        parts.append(figs.div(fig))
    parts.append(figs.div(plots.latency(df, "tokens", subtitle)))
    if df["hidden"].nunique() > 1:
        parts.append(figs.div(plots.latency(df, "hidden", subtitle)))
    ladders = {r["id"]: (r.get("extra") or {}).get("ladder") for r in runs}
    parts.append(figs.div(plots.bandwidth(df, ladders, {r["id"]: r["copy_gbps"] for r in runs}, subtitle)))
    parts.append(figs.div(plots.speedup_heatmap(df, subtitle=subtitle)))
    parts.append(figs.div(plots.memory(df, subtitle)))
    energy_fig = plots.energy(df, subtitle)
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


def _claims(runs: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[str]:
    """The claims check per dtype × mode, apart for each CPU allocator mode (never pooled across it)."""
    method = {r["id"]: allocator_short(r) or "" for r in runs}
    claims = []
    for how in sorted(set(method.values())):
        pts = [p for p in points if method[p["run_id"]] == how]
        for dtype in sorted({p["dtype"] for p in pts}):
            for mode in sorted({p["mode"] for p in pts}):
                claims += [
                    dict(c.__dict__, dtype=dtype, mode=mode, method=how or "—")
                    for c in recommend.claims_check(pts, dtype, mode)
                ]
    if not claims:
        return []
    columns = [
        ("claim", "claim"),
        ("impl", COLUMNS["impl"]),
        ("dtype", COLUMNS["dtype"]),
        ("mode", COLUMNS["mode"]),
        *([("method", "method")] if any(c["method"] != "—" for c in claims) else []),
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
    bound = [
        {**p, "launch_us": (p.get("extra") or {}).get("dispatch_us")}
        for p in points
        if (p.get("extra") or {}).get("launch_bound")
    ]
    if bound:
        parts.append(
            f"<p>{len(bound)} point{'' if len(bound) == 1 else 's'} launch-bound on the measured host: launching one "
            "call took the CPU longer than the GPU took to run it. Their times are the GPU's where the run queued "
            "cold calls behind a spin kernel (its timing method says so): what the norm costs inside a model step "
            "whose GPU work runs ahead of the host. A call alone, or a step that is itself launch-bound, pays the "
            "launch instead.</p>"
        )
        parts.append(
            _table(bound, [*_POINT_KEY_COLUMNS, ("launch_us", "launch (µs, host)"), ("p50_us", COLUMNS["p50_us"])])
        )
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
    kernel_runs = [r for r in runs if r.get("kind", "kernels") == "kernels"]
    # the kernel sections read only kernel runs' points: a block run's points are drawn by its own section
    points = store.points([r["id"] for r in kernel_runs]) if kernel_runs else []
    n_points = sum(r.get("points_done") or 0 for r in runs)
    labels = {r["id"]: esc(f"run {r['id']}" + (f" ({r['label']})" if r.get("label") else "")) for r in runs}
    df = plots.points_frame(points, labels)
    figs = _Figures()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = title or "Normalization layers measured on " + ", ".join(
        sorted({(r["machine"].get("gpu") or {}).get("name") or r["machine"].get("cpu_model", "?") for r in runs})
    )
    parts = [
        f"<h1>{esc(heading)}</h1><p class='muted'>NormScope report · generated {now} · "
        f"{n_points} points from {len(runs)} run(s)</p>",
    ]
    if kernel_runs:
        parts += ["<h2>The answer</h2>", *_answers(kernel_runs, points)]
    for r in runs:
        if r.get("kind", "kernels") != "kernels":
            parts += lab_section(store, r, figs)
    if kernel_runs:
        parts += _claims(kernel_runs, points)
        if not df.empty:
            parts += _charts(df, kernel_runs, points, figs)
        parts += _noise_and_failures(points)
        parts += ["<h2>All points</h2>", _table(points, _ALL_POINT_COLUMNS)]
    parts.append("<h2>Method</h2>")
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
