"""The report's section for a drift run: the demo's false alarms and detection rates, a profile, or a check."""

from __future__ import annotations

from typing import Any

from ...report.html import esc
from ...store import Store
from . import plots as plots_drift
from .analysis import COMPONENT_HELP, calibration_spread


def _layer_table(profile: dict[str, Any]) -> str:
    cal = profile["calibration"]
    rows = "".join(
        f"<tr><td>{esc(lay['name'])}</td><td>{esc(lay['kind'])}</td><td class='num'>{lay['channels']}</td>"
        f"<td class='num'>{lay['rows']:,}</td><td class='num'>{lay['low_var_fraction']:.2%}</td>"
        f"<td class='num'>{cal['layer_threshold'][lay['name']]:.2f}</td></tr>"
        for lay in profile["layers"]
    )
    return (
        "<table><thead><tr><th>layer</th><th>kind</th><th>channels</th><th>reference rows</th>"
        "<th>low-variance rows</th><th>threshold</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _method(profile: dict[str, Any]) -> str:
    cal = profile["calibration"]
    comps = "; ".join(f"{k}: {v}" for k, v in COMPONENT_HELP.items())
    return (
        "<p>Forward pre-hooks on every normalization layer record its input's per-row mean, RMS, max |x| and "
        f"variance and per-channel sums. Score components per layer: {esc(comps)}. Each component is standardized "
        f"by its mean and spread over {cal['windows']} held-out in-distribution windows; a layer's score is its "
        "largest standardized component and the model's score the largest layer score. Thresholds are the "
        f"conformal (1 − α) quantiles of those held-out scores, α = {cal['alpha']:g}: an in-distribution window "
        "alarms with probability at most α. Model threshold "
        f"{cal['model_threshold']:.2f}. Rows inside a window are not independent, so KS p-values are not used "
        "for alarms.</p>"
    )


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    rid = run["id"]
    action = run["spec"].get("action", "demo")
    title = f"Drift monitor: {esc(action)} (run {rid}" + (f", {esc(run['label'])}" if run.get("label") else "") + ")"
    parts = [f"<h2>{title}</h2>"]
    profile = store.artifact(rid, "drift/profile")
    if profile is None:
        parts.append(
            f'<p class="warn">Run {rid} is {esc(run["status"])} and holds no results'
            + (f": {esc(run['error'])}" if run.get("error") else "")
            + ".</p>"
        )
        return parts
    if action == "demo":
        demo = store.artifact(rid, "drift/demo") or {}
        sets = demo.get("sets") or []
        m = demo.get("model") or {}
        fa = demo.get("false_alarm_rate")
        mean, sd = calibration_spread(profile["calibration"]["windows"], profile["calibration"]["alpha"])
        parts.append(
            f'<div class="answer">Calibrated to a {demo.get("alpha", 0):.0%} false-alarm rate (one calibration on '
            f"{profile['calibration']['windows']} windows gives {mean:.1%} ± {sd:.1%}); measured on "
            f"{demo.get('false_alarm_windows')} held-out Shakespeare windows: "
            f"<b>{'N/A' if fa is None else f'{fa:.1%}'}</b> false alarms. Detection: "
            + ", ".join(f"{esc(plots_drift.set_name(s))} {s['alarm_rate']:.0%}" for s in sets if s["set"] != "heldout")
            + ".</div>"
        )
        val = m.get("val_loss")
        parts.append(
            f"<p>Model: {esc(m.get('how'))}; {m.get('parameters', 0):,} parameters; held-out loss "
            f"{'N/A' if val is None else f'{val:.2f}'} nats (letter frequencies alone: "
            f"{m.get('unigram_nats', float('nan')):.2f}). "
            f"Prose set: {esc(', '.join(demo.get('prose_files') or []))}; code set: {demo.get('code_files')} "
            "Python files of this project.</p>"
        )
        parts.append(figs.div(plots_drift.detection(sets, demo.get("alpha", 0.05))))
        parts.append(figs.div(plots_drift.detection_vs_corruption(sets, demo.get("alpha", 0.05))))
        parts.append(figs.div(plots_drift.layer_scores(sets)))
        parts.append(figs.div(plots_drift.window_scores(sets, profile["calibration"]["model_threshold"])))
    elif action == "check":
        check = store.artifact(rid, "drift/check") or {}
        verdict = check.get("verdict") or {}
        cls = "warn" if verdict.get("drift") else "answer"
        parts.append(f'<div class="{cls}">{esc(verdict.get("text", "no verdict stored"))}</div>')
        if check.get("layers"):
            parts.append(figs.div(plots_drift.check_layers(check)))
    parts += ["<h3>Profile</h3>", _layer_table(profile), _method(profile)]
    meta = profile.get("meta") or {}
    if meta:
        window = meta.get("window") or f"{meta.get('window_batches', 1)} batch(es) of the model's data"
        args = ", ".join(f"{k}={v}" for k, v in (meta.get("args") or {}).items())
        parts.append(
            f"<p class='muted'>Profile of {esc(meta.get('model'))}{esc(f'({args})' if args else '')}; "
            f"one window: {esc(window)}.</p>"
        )
    return parts
