"""The report section of a training-stability run, and the tables the Training page shows.

``section(store, run, figs)`` renders one run of kind "training" for ``document.build``; ``tables`` turns
an ``analysis.Summary`` into rows with display labels (units in the labels), shared with the page
so both say the same thing the same way. Missing numbers read "N/A" with the reason.
"""

from __future__ import annotations

from typing import Any

from ...catalog import PLACEMENTS
from ...report.labels import na
from ...store import Store
from . import analysis as analysis
from . import plots as plots

CELL_PREFIX = "cell/"


def load(store: Store, run_id: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The run's finished cells, and its corpus description."""
    return list(store.artifacts(run_id, CELL_PREFIX).values()), store.artifact(run_id, "corpus")


def _pl(name: str) -> str:
    return PLACEMENTS[name].display if name in PLACEMENTS else name


def _ci(mean: float | None, lo: float | None, hi: float | None, reason: str | None = None) -> str:
    if mean is None:
        return f"N/A ({reason})" if reason else "N/A"
    if lo is None or hi is None:
        return f"{mean:.3f} (no CI: {reason or 'one run'})"
    return f"{mean:.3f} ({lo:.3f}–{hi:.3f})"


def _rate(k: int, n: int, lo: float | None, hi: float | None) -> str:
    if not n:
        return "N/A (no runs)"
    return f"{k}/{n} = {100 * k / n:.0f}% ({100 * (lo or 0):.0f}–{100 * (hi or 0):.0f}%)"


def tables(s: analysis.Summary) -> dict[str, list[dict[str, str]]]:
    """Display rows: claims, placements, divergence by warmup, losses, depth ratios, fine-tuning, quality."""
    out: dict[str, list[dict[str, str]]] = {}
    out["claims"] = [
        {
            "claim": c.claim,
            "verdict": analysis.VERDICTS[c.verdict],
            "measured here": c.measured,
            "criterion": c.criterion,
        }
        for c in s.claims
    ]
    out["placements"] = [
        {
            "placement": _pl(p["placement"]),
            "layers": str(p["depth"]),
            "runs": str(p["runs"]),
            "diverged (95% CI)": p["divergence"].text(),
            "failed (95% CI)": p["failure"].text(),
            "lr range that trains": p["lr_range"],
            "best final val loss, nats (95% CI over seeds)": (
                f"{_ci(b['val_loss_mean'], b['val_loss_lo'], b['val_loss_hi'])} at lr {b['lr']:g}, warmup {b['warmup']}"
                if (b := p["best"])
                else "N/A (no setting where every seed finished)"
            ),
            "tokens/s (median)": na(p["tokens_per_s"], "{:,.0f}"),
            "wall time (s)": f"{p['wall_s']:,.0f}",
            "energy (J)": na(p["energy_j"], "{:,.0f}", p["energy_reason"] or "not measured"),
        }
        for p in s.placements
    ]
    out["divergence"] = [
        {
            "placement": _pl(r["placement"]),
            "layers": str(r["depth"]),
            "warmup (steps)": "all" if r["warmup"] is None else str(r["warmup"]),
            "diverged (95% CI)": _rate(r["diverged"], r["runs"], r["divergence_lo"], r["divergence_hi"]),
            "failed (95% CI)": _rate(r["failed"], r["runs"], r["failure_lo"], r["failure_hi"]),
            "first divergence step": "none" if (step := r["first_divergence_step"]) is None else f"{step:d}",
        }
        for r in s.divergence
    ]
    out["losses"] = [
        {
            "placement": _pl(r["placement"]),
            "layers": str(r["depth"]),
            "lr": f"{r['lr']:g}",
            "warmup (steps)": str(r["warmup"]),
            "seeds finished / trained / run": f"{r['finished']} / {r['trained']} / {r['seeds']}",
            "final val loss, nats (95% CI)": _ci(r["val_loss_mean"], r["val_loss_lo"], r["val_loss_hi"], r["note"]),
            "wall time (s)": f"{r['wall_s']:,.1f}",
        }
        for r in s.losses
    ]
    out["depth_ratios"] = [
        {
            "placement": _pl(r["placement"]),
            "last-layer FFN ‖∇W‖ at L shallow": f"{na(r['last_ffn_grad_shallow'], '{:.4g}')} (L={r['shallow']})",
            "at L deep": f"{na(r['last_ffn_grad_deep'], '{:.4g}')} (L={r['deep']})",
            "ratio deep/shallow": na(r["ratio"], "{:.3f}"),
            "1/√(depth ratio) (Pre-LN theory)": f"{r['pre_ln_theory']:.3f}",
            "last/first layer at L deep": na(r["top_over_bottom_deep"], "{:.2f}"),
        }
        for r in s.depth_ratios
    ]
    out["finetune"] = [
        {
            "placement": _pl(r["placement"]),
            "fine-tuning lr": f"{r['lr']:g}",
            "runs": str(r["runs"]),
            "diverged": str(r["diverged"]),
            "failed": str(r["failed"]),
            "val loss before, nats": na(r["start_val_loss"], "{:.3f}"),
            "val loss after, nats (95% CI)": _ci(
                r["val_loss_mean"],
                r["val_loss_lo"],
                r["val_loss_hi"],
                "every run diverged" if r["diverged"] == r["runs"] else None,
            ),
            "sd over seeds": na(r["val_loss_sd"], "{:.4f}", "fewer than 2 finished"),
        }
        for r in s.finetune_table
    ]
    q = s.quality
    out["quality"] = (
        [
            {
                "placement": _pl(q.placement) if q.placement else "N/A",
                "seeds paired": str(q.pairs),
                f"{q.base} val loss (95% CI)": _ci(
                    q.base_loss.mean, q.base_loss.lo, q.base_loss.hi, q.base_loss.reason
                ),
                f"{q.other} val loss (95% CI)": _ci(
                    q.other_loss.mean, q.other_loss.lo, q.other_loss.hi, q.other_loss.reason
                ),
                "difference (% of base, 95% CI)": (
                    "N/A"
                    if q.diff_pct.mean is None
                    else f"{q.diff_pct.mean:+.2f}%"
                    + (
                        f" ({q.diff_pct.lo:+.2f}% to {q.diff_pct.hi:+.2f}%)"
                        if q.diff_pct.lo is not None and q.diff_pct.hi is not None
                        else f" (no CI: {q.diff_pct.reason})"
                    )
                ),
                "equal within": f"±{q.margin_pct:g}%",
            }
        ]
        if q.pairs
        else []
    )
    return out


def training_time_text(s: analysis.Summary, spec: dict[str, Any]) -> str:
    workers = spec.get("workers", 1)
    side = f", {workers} at a time" if workers > 1 else ""
    return f"{s.wall_s:,.0f} s of training summed over the runs{side}"


def settings_text(spec: dict[str, Any], corpus: dict[str, Any] | None) -> str:
    """One paragraph: the model, the data and the optimizer the numbers come from."""
    clip = f"clipping at {spec['clip_norm']:g}" if spec.get("clip_norm") else "no gradient clipping"
    text = (
        f"{spec['family']} blocks, {spec['norm']}, hidden {spec['hidden']}, {spec['heads']} heads, depths "
        f"{', '.join(map(str, spec['depths']))}; byte-level tokens, sequences of {spec['seq_len']}, batch "
        f"{spec['batch']}, {spec['steps']} steps; AdamW (β {spec['beta1']}, {spec['beta2']}, weight decay "
        f"{spec['weight_decay']}), linear warmup then cosine decay to 10%, {clip}; diverged = NaN/Inf or a loss above "
        f"the first loss + {spec['divergence_margin']:g} nats; trained = final validation loss at least "
        f"{spec['learned_margin']:g} nats below the unigram baseline."
    )
    if corpus:
        text += (
            f" Corpus: {corpus['source']}, {corpus['train_bytes']:,} training bytes "
            f"({len(corpus['train_documents'])} documents), {corpus['val_bytes']:,} validation bytes "
            f"({', '.join(corpus['val_documents'])}); unigram baseline {corpus['unigram_nats']:.3f} nats."
        )
        if corpus.get("finetune_document"):
            text += f" Fine-tuning set: {corpus['finetune_document']} ({corpus['finetune_split']})."
    return text


def figure_settings(spec: dict[str, Any]) -> list[tuple[float, int, int]]:
    """(lr, warmup, depth) combinations worth a loss-curve figure: every lr at the first warmup and depth."""
    return [(lr, spec["warmups"][0], spec["depths"][0]) for lr in spec["lrs"]]


def section(store: Store, run: dict[str, Any], figs: Any) -> list[str]:
    from ...report.html import esc

    cells, corpus = load(store, run["id"])
    spec = run["spec"]
    s = analysis.summarize(cells, spec.get("quality_margin_pct", 1.0))
    t = tables(s)
    planned = run.get("points_planned") or len(cells)
    head = f"Training stability: run {run['id']}" + (f" ({run['label']})" if run.get("label") else "")
    parts = [
        f"<h2>{esc(head)}</h2>",
        f"<p class='muted'>{esc(run['status'])}: {len(cells)} of {planned} cells finished; "
        f"{esc(training_time_text(s, spec))}.</p>",
        f"<p>{esc(settings_text(spec, corpus))}</p>",
        "<h3>Published claims, checked on this machine</h3>",
        _html_table(t["claims"], esc),
        "<h3>By placement</h3>",
        _html_table(t["placements"], esc),
        "<h3>Divergence and failure by warmup</h3>",
        _html_table(t["divergence"], esc),
    ]
    for depth in spec["depths"]:
        parts.append(figs.div(plots.divergence_map(s.rows, depth)))
    for lr, warmup, depth in figure_settings(spec):
        parts.append(figs.div(plots.loss_curves(cells, lr, warmup, depth)))
    parts += ["<h3>Final validation loss over seeds</h3>", _html_table(t["losses"], esc)]
    parts += ["<h3>Gradient norms at initialisation</h3>", figs.div(plots.init_profile(s.inits))]
    parts.append(_html_table(t["depth_ratios"], esc) if t["depth_ratios"] else "<p>N/A: one init depth only.</p>")
    lr, warmup, depth = max(spec["lrs"]), spec["warmups"][0], spec["depths"][0]
    parts.append(figs.div(plots.grad_norm_curves(cells, lr, warmup, depth)))
    parts.append("<h3>Fine-tuning on one document</h3>")
    parts.append(_html_table(t["finetune"], esc) if t["finetune"] else "<p>N/A: no fine-tuning runs in this grid.</p>")
    parts.append("<h3>RMSNorm vs LayerNorm quality</h3>")
    parts.append(_html_table(t["quality"], esc) if t["quality"] else "<p>N/A: no paired quality runs.</p>")
    return parts


def text_table(rows: list[dict[str, str]], width: int = 60) -> str:
    """Rows as an aligned plain-text table (cells longer than ``width`` are wrapped onto more lines)."""
    import textwrap

    if not rows:
        return "  N/A: nothing finished yet"
    keys = list(rows[0])
    cells = [[textwrap.wrap(str(r[k]), width) or [""] for k in keys] for r in rows]
    heads = [textwrap.wrap(k, width) or [""] for k in keys]
    widths = [max(max(len(x) for x in c[i]) for c in [heads, *cells]) for i in range(len(keys))]

    def lines(row: list[list[str]]) -> list[str]:
        height = max(len(c) for c in row)
        return [
            "  ".join((c[j] if j < len(c) else "").ljust(widths[i]) for i, c in enumerate(row)).rstrip()
            for j in range(height)
        ]

    out = [*lines(heads), "  ".join("-" * w for w in widths)]
    for row in cells:
        out += lines(row)
    return "\n".join(out)


def format_text(run: dict[str, Any], s: analysis.Summary, corpus: dict[str, Any] | None) -> str:
    """The section as text for the CLI and the benchmark: settings, claims, tables."""
    t = tables(s)
    planned = run.get("points_planned") or s.cells_done
    parts = [
        f"Training stability, run {run['id']} ({run['status']}): {s.cells_done} of {planned} cells, "
        + training_time_text(s, run["spec"]),
        settings_text(run["spec"], corpus),
    ]
    for key, title in (
        ("placements", "By placement (rates with Wilson 95% CIs; losses with Student-t 95% CIs over seeds)"),
        ("divergence", "Divergence and failure by warmup"),
        ("losses", "Final validation loss by setting"),
        ("depth_ratios", "Init gradient norm of the last layer's FFN output projection, deep vs shallow"),
        ("finetune", "Fine-tuning on one document"),
        ("quality", "RMSNorm vs LayerNorm quality"),
        ("claims", "Claims check"),
    ):
        parts += ["", title, text_table(t[key], 48 if key == "claims" else 40)]
    return "\n".join(parts)


def _html_table(rows: list[dict[str, str]], esc: Any) -> str:
    if not rows:
        return "<p>N/A: nothing finished yet.</p>"
    head = "".join(f"<th>{esc(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
