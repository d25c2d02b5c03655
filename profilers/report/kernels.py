"""The kernel sweep's part of a report: the answer per machine × dtype × use, the claims checked, the charts,
noise and failures, every point; and how a run of the kernel engine (kernels or blocks) measured."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..analysis import recommend
from ..analysis.method import allocator_sentence, allocator_short, method_of
from ..analysis.noise import NOISY_RULE
from ..catalog import KERNEL_MARGIN_PCT, RTOL, WRONG_REL_L2, label
from ..store import Store
from . import plots
from .html import Figures, esc, table
from .labels import COLUMNS, POINT_TABLE, na, number

_POINT_KEY_COLUMNS = [
    (k, COLUMNS[k]) for k in ("run_id", "variant", "impl", "dtype", "tokens", "hidden", "mode", "status")
]
_ALL_POINT_COLUMNS = [(k, COLUMNS[k]) for k in POINT_TABLE]


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


def _answers(runs: list[dict[str, Any]], points: list[dict[str, Any]], margin_pct: float) -> list[str]:
    """One answer per question, ranked and decided at ±``margin_pct`` as the Recommend page does."""
    parts = []
    for q in questions(runs, points):
        pts = [p for p in points if p["run_id"] in q["runs"]]
        r = recommend.rank(pts, q["target"], device=q["device"], margin_pct=margin_pct)
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
        cls = "answer" if r.decided else "answer tie"
        lines = "".join(f"<li>{esc(line)}</li>" for line in r.lines[:6])
        left = (
            "<p class='muted'>Not ranked: "
            + esc("; ".join(f"{c.name} ({c.status}: {c.reason})" for c in r.left_out[:6]))
            + "</p>"
            if r.left_out
            else ""
        )
        note = f"<p class='muted'>{esc(r.interval_note)}</p>" if r.interval_note else ""
        parts.append(f'<div class="{cls}"><b>{head}</b>: {esc(r.headline)}<ul>{lines}</ul>{note}{left}</div>')
    return parts or ["<p>No timed kernel points to rank.</p>"]


def method(run: dict[str, Any]) -> str:
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
        else f"one copy probe in the same run: {na(run.get('copy_gbps'), '{:,.1f} GB/s')}"
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
        "over rounds (the expanded percentile interval, which holds for few rounds); each comparison is decided "
        "at a margin of practical equivalence (the answer states it): equivalent when the whole interval lies "
        "inside ±margin, faster or slower beyond it, undecided when the interval crosses it.",
        f"Statistics: p20, p50, p80 and IQR of the clean samples; noisy when {NOISY_RULE}.",
        gate,
        f"Energy: {energy}; idle power {na(run.get('idle_power_w'), '{:.0f} W')}.",
    ]
    if kind == "kernels":
        items.append(f"Roofline: effective GB/s (minimum-traffic model) as % of {ceiling}.")
    if allocator_sentence(run):
        items.append(allocator_sentence(run) + ".")
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _charts(df: pd.DataFrame, runs: list[dict[str, Any]], points: list[dict[str, Any]], figs: Figures) -> list[str]:
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


def _claims(runs: list[dict[str, Any]], points: list[dict[str, Any]], margin_pct: float) -> list[str]:
    """The claims check per dtype × mode, apart for each CPU allocator mode (never pooled across it)."""
    method = {r["id"]: allocator_short(r) or "" for r in runs}
    claims = []
    for how in sorted(set(method.values())):
        pts = [p for p in points if method[p["run_id"]] == how]
        for dtype in sorted({p["dtype"] for p in pts}):
            for mode in sorted({p["mode"] for p in pts}):
                claims += [
                    dict(c.__dict__, dtype=dtype, mode=mode, method=how or "—")
                    for c in recommend.claims_check(pts, dtype, mode, margin_pct)
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
        ("rerun", "on a rerun"),
    ]
    note = (
        f"<p class='muted'>{esc(recommend.margin_note(margin_pct))} Verdicts rest on each run's 95% interval; one "
        "stands for a rerun only where the rerun interval (widened by the machine's calibrated between-run "
        "spread) reaches the same verdict at the margin.</p>"
    )
    return ["<h2>Published claims, checked here</h2>", table(claims, columns), note]


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
        parts.append(table(failed + skipped, [*_POINT_KEY_COLUMNS, ("error", COLUMNS["error"])]))
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
            table(bound, [*_POINT_KEY_COLUMNS, ("launch_us", "launch (µs, host)"), ("p50_us", COLUMNS["p50_us"])])
        )
    return parts


_ALL_POINT_COLUMNS = [(k, COLUMNS[k]) for k in POINT_TABLE]


def sections(store: Store, runs: list[dict[str, Any]], figs: Figures) -> list[str]:
    """The kernel runs read together: one answer per machine × dtype × use pools the runs that measured it."""
    points = store.points([r["id"] for r in runs])
    labels = {r["id"]: esc(f"run {r['id']}" + (f" ({r['label']})" if r.get("label") else "")) for r in runs}
    df = plots.points_frame(points, labels)
    margin = figs.margin(KERNEL_MARGIN_PCT)
    parts = ["<h2>The answer</h2>", *_answers(runs, points, margin), *_claims(runs, points, margin)]
    if not df.empty:
        parts += _charts(df, runs, points, figs)
    parts += _noise_and_failures(points)
    parts += ["<h2>All points</h2>", table(points, _ALL_POINT_COLUMNS)]
    return parts
