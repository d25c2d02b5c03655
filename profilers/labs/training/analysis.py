"""What a training-stability grid says: rates with intervals, losses with CIs, depth ratios, and the claims check.

Pure functions over the cell documents a grid stored (``measure.py`` beside it); no torch, no store.
Statistics, and why these:
- divergence and failure rates carry a Wilson 95% interval (sound at 0/n and n/n, where the normal
  interval collapses to a point);
- a difference of two rates carries Newcombe's hybrid score interval (built from the two Wilson
  intervals); a claim about one placement being more stable holds only when it excludes 0;
- a mean over seeds carries a Student-t 95% interval (with 2 seeds it is wide, and says so);
- the init gradient-norm depth ratio is the last layer's FFN-output gradient norm at the deeper model
  over the shallower one, each averaged over the init seeds. Xiong et al. 2020 (Thm. 1, Fig. 3): for
  Pre-LN it falls about as 1/√L (≈ 0.71 for 12 vs 6 layers); for Post-LN it does not depend on L.

A training run *failed* when it diverged (NaN/Inf, or a loss above the initial loss + margin) or ended
no better than the unigram baseline (final validation loss not ``learned_margin`` below the loss of
predicting bytes by frequency alone): Post-LN's classic failure is a model stuck there, not a NaN.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...analysis.stats import newcombe, t_quantile, wilson
from ...catalog import PLACEMENTS

VERDICTS = {
    "measured": "measured: holds here",
    "not_reproduced": "not reproduced",
    "not_measured": "not measured",
}


# ---- intervals ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeanCI:
    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    reason: str | None = None  # why the interval (or the mean) is missing


def mean_ci(values: Sequence[float | None]) -> MeanCI:
    """Mean with a Student-t 95% interval over the values that exist."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return MeanCI(None, None, None, 0, "no finished run")
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return MeanCI(m, None, None, 1, "one run: no interval")
    half = t_quantile(0.975, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return MeanCI(m, m - half, m + half, len(xs))


# ---- rows from the stored cells -----------------------------------------------------------------------------------
def train_rows(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per training run of the grid or the quality comparison."""
    out = []
    for doc in cells:
        c = doc.get("cell") or {}
        if c.get("kind") != "train":
            continue
        out.append(
            {
                "key": c["key"],
                "placement": c["placement"],
                "norm": c["norm"],
                "depth": c["depth"],
                "lr": c["lr"],
                "warmup": c["warmup"],
                "seed": c["seed"],
                "groups": tuple(c.get("groups") or ()),
                "diverged": bool(doc.get("diverged")),
                "diverged_step": doc.get("diverged_step"),
                "trained": bool(doc.get("trained")),
                "failed": bool(doc.get("diverged")) or not doc.get("trained"),
                "final_val_loss": doc.get("final_val_loss"),
                "final_loss": doc.get("final_loss"),
                "unigram_nats": doc.get("unigram_nats"),
                "wall_s": doc.get("wall_s"),
                "tokens_per_s": doc.get("tokens_per_s"),
                "energy_j": doc.get("energy_j"),
                "energy_reason": doc.get("energy_reason"),
                "initial_grad_norm": ((doc.get("log") or {}).get("grad_norm") or [None])[0],
            }
        )
    return out


def _grid(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "grid" in r["groups"]]


def _ordered(placements: Iterable[str]) -> list[str]:
    seen = set(placements)
    return [p for p in PLACEMENTS if p in seen]


@dataclass(frozen=True)
class Rate:
    k: int
    n: int
    lo: float | None
    hi: float | None

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None

    def text(self) -> str:
        if not self.n:
            return "N/A (no runs)"
        return f"{self.k}/{self.n} = {100 * self.k / self.n:.0f}% (95% CI {100 * self.lo:.0f}–{100 * self.hi:.0f}%)"


def rate(rows: Sequence[dict[str, Any]], key: str) -> Rate:
    n, k = len(rows), sum(1 for r in rows if r[key])
    ci = wilson(k, n)
    return Rate(k, n, ci[0] if ci else None, ci[1] if ci else None)


def divergence_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per placement, depth and warmup (and all warmups together): divergence and failure rates."""
    grid = _grid(rows)
    by: dict[tuple[str, int, int | None], list[dict[str, Any]]] = defaultdict(list)
    for r in grid:
        by[(r["placement"], r["depth"], r["warmup"])].append(r)
        by[(r["placement"], r["depth"], None)].append(r)
    out = []
    for pl in _ordered(r["placement"] for r in grid):
        for depth in sorted({r["depth"] for r in grid}):
            for warmup in [*sorted({r["warmup"] for r in grid}), None]:
                group = by.get((pl, depth, warmup))
                if not group:
                    continue
                d, f = rate(group, "diverged"), rate(group, "failed")
                out.append(
                    {
                        "placement": pl,
                        "depth": depth,
                        "warmup": warmup,
                        "runs": len(group),
                        "diverged": d.k,
                        "divergence_rate": d.rate,
                        "divergence_lo": d.lo,
                        "divergence_hi": d.hi,
                        "failed": f.k,
                        "failure_rate": f.rate,
                        "failure_lo": f.lo,
                        "failure_hi": f.hi,
                        "first_divergence_step": min(
                            (r["diverged_step"] for r in group if r["diverged_step"] is not None), default=None
                        ),
                    }
                )
    return out


def loss_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final validation loss, mean and 95% CI over seeds, per placement × depth × lr × warmup (grid runs)."""
    grid = _grid(rows)
    by: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in grid:
        by[(r["placement"], r["depth"], r["lr"], r["warmup"])].append(r)
    out = []
    for pl in _ordered(r["placement"] for r in grid):
        for (p, depth, lr, warmup), group in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3])):
            if p != pl:
                continue
            ci = mean_ci([r["final_val_loss"] for r in group])
            out.append(
                {
                    "placement": pl,
                    "depth": depth,
                    "lr": lr,
                    "warmup": warmup,
                    "seeds": len(group),
                    "finished": ci.n,
                    "trained": sum(r["trained"] for r in group),
                    "val_loss_mean": ci.mean,
                    "val_loss_lo": ci.lo,
                    "val_loss_hi": ci.hi,
                    "note": ci.reason if ci.n < len(group) or ci.reason else None,
                    "wall_s": sum(r["wall_s"] or 0.0 for r in group),
                }
            )
    return out


def lr_range(rows: Sequence[dict[str, Any]], placement: str, depth: int, warmup: int | None = None) -> list[float]:
    """Learning rates at which every seed of ``placement`` trained (at ``warmup``, or at any warmup)."""
    grid = [r for r in _grid(rows) if r["placement"] == placement and r["depth"] == depth]
    ok = []
    for lr in sorted({r["lr"] for r in grid}):
        at = [r for r in grid if r["lr"] == lr]
        warmups = sorted({r["warmup"] for r in at}) if warmup is None else [warmup]
        if any(
            all(r["trained"] for r in at if r["warmup"] == w) and any(r["warmup"] == w for r in at) for w in warmups
        ):
            ok.append(lr)
    return ok


def lr_text(lrs: Sequence[float], tried: Sequence[float]) -> str:
    """'0.003 – 0.01' for a contiguous run of the rates tried, else the list; 'none of …' when none trained."""
    if not tried:
        return "N/A"
    if not lrs:
        return "none of " + ", ".join(f"{x:g}" for x in tried)
    if len(lrs) == 1:
        return f"{lrs[0]:g}"
    i = list(tried).index(lrs[0])
    if list(tried)[i : i + len(lrs)] == list(lrs):
        return f"{lrs[0]:g} – {lrs[-1]:g}"
    return ", ".join(f"{x:g}" for x in lrs)


def lr_ranges_text(rows: Sequence[dict[str, Any]], placement: str, depth: int) -> str:
    """The learning rates that train, per warmup: 'warmup 0: lr 0.003; warmup 100: lr 0.003 – 0.01'."""
    grid = [r for r in _grid(rows) if r["placement"] == placement and r["depth"] == depth]
    tried = sorted({r["lr"] for r in grid})
    parts = []
    for w in sorted({r["warmup"] for r in grid}):
        parts.append(f"warmup {w}: lr {lr_text(lr_range(grid, placement, depth, w), tried)}")
    return "; ".join(parts) or "N/A"


def placement_summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per placement and depth: rates, the lr range that trains, the best config's loss, throughput."""
    grid = _grid(rows)
    out = []
    for pl in _ordered(r["placement"] for r in grid):
        for depth in sorted({r["depth"] for r in grid if r["placement"] == pl}):
            group = [r for r in grid if r["placement"] == pl and r["depth"] == depth]
            complete = [r for r in loss_table(group) if r["val_loss_mean"] is not None and r["finished"] == r["seeds"]]
            best = min(complete, key=lambda r: r["val_loss_mean"]) if complete else None
            tps = [r["tokens_per_s"] for r in group if r["tokens_per_s"]]
            energy = [r["energy_j"] for r in group if r["energy_j"] is not None]
            out.append(
                {
                    "placement": pl,
                    "depth": depth,
                    "runs": len(group),
                    "divergence": rate(group, "diverged"),
                    "failure": rate(group, "failed"),
                    "lr_range": lr_ranges_text(group, pl, depth),
                    "best": best,
                    "tokens_per_s": statistics.median(tps) if tps else None,
                    "wall_s": sum(r["wall_s"] or 0.0 for r in group),
                    "energy_j": sum(energy) if energy and len(energy) == len(group) else None,
                    "energy_reason": None if energy else next((r["energy_reason"] for r in group), None),
                }
            )
    return out


# ---- init gradient-norm profile --------------------------------------------------------------------------------
def init_rows(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in cells:
        c = doc.get("cell") or {}
        if c.get("kind") == "init":
            out.append(
                {
                    "placement": c["placement"],
                    "norm": c["norm"],
                    "depth": doc["depth"],
                    "ffn_out_grad_norm": doc["ffn_out_grad_norm"],
                    "attn_out_grad_norm": doc["attn_out_grad_norm"],
                    "seeds": doc.get("seeds") or [],
                }
            )
    return out


def depth_ratios(inits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per placement: the last layer's FFN-output gradient norm at each depth, and deeper/shallower ratios
    (against the shallowest depth) beside the 1/√ratio that Pre-LN's theory predicts."""
    out = []
    for pl in _ordered(r["placement"] for r in inits):
        by_depth = {r["depth"]: r for r in inits if r["placement"] == pl}
        depths = sorted(by_depth)
        last = {d: by_depth[d]["ffn_out_grad_norm"][-1] for d in depths}
        top_bottom = {
            d: (g[-1] / g[0]) if g and g[0] and g[-1] is not None else None
            for d, g in ((d, by_depth[d]["ffn_out_grad_norm"]) for d in depths)
        }
        base = depths[0] if depths else None
        for d in depths[1:]:
            ratio = last[d] / last[base] if last[d] is not None and last[base] else None
            out.append(
                {
                    "placement": pl,
                    "shallow": base,
                    "deep": d,
                    "last_ffn_grad_shallow": last[base],
                    "last_ffn_grad_deep": last[d],
                    "ratio": ratio,
                    "pre_ln_theory": math.sqrt(base / d),
                    "top_over_bottom_deep": top_bottom[d],
                }
            )
    return out


# ---- fine-tuning on one document ------------------------------------------------------------------------------------
def finetune_rows(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fine-tuning run: failed when it diverged or ended worse on the document's held-out
    part than the pretrained model it started from."""
    out = []
    for doc in cells:
        c = doc.get("cell") or {}
        if c.get("kind") != "finetune":
            continue
        start = doc.get("pretrained_finetune_val_loss")
        pre = doc.get("pretrain") or {}
        for ft in doc.get("finetune") or []:
            end = ft.get("final_val_loss")
            worse = end is None or start is None or end > start
            out.append(
                {
                    "placement": c["placement"],
                    "seed": c["seed"],
                    "lr": ft["lr"],
                    "pretrain_diverged": bool(pre.get("diverged")),
                    "pretrain_val_loss": pre.get("final_val_loss"),
                    "start_val_loss": start,
                    "final_val_loss": end,
                    "diverged": bool(ft.get("diverged")),
                    "diverged_step": ft.get("diverged_step"),
                    "failed": bool(ft.get("diverged")) or worse,
                    "wall_s": ft.get("wall_s"),
                }
            )
        if pre.get("diverged"):
            out.append(
                {
                    "placement": c["placement"],
                    "seed": c["seed"],
                    "lr": None,
                    "pretrain_diverged": True,
                    "pretrain_val_loss": None,
                    "start_val_loss": None,
                    "final_val_loss": None,
                    "diverged": True,
                    "diverged_step": pre.get("diverged_step"),
                    "failed": True,
                    "wall_s": pre.get("wall_s"),
                }
            )
    return out


def finetune_table(ft: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pl in _ordered(r["placement"] for r in ft):
        for lr in sorted({r["lr"] for r in ft if r["placement"] == pl and r["lr"] is not None}):
            group = [r for r in ft if r["placement"] == pl and r["lr"] == lr]
            ci = mean_ci([r["final_val_loss"] for r in group])
            start = mean_ci([r["start_val_loss"] for r in group])
            out.append(
                {
                    "placement": pl,
                    "lr": lr,
                    "runs": len(group),
                    "diverged": sum(r["diverged"] for r in group),
                    "failed": sum(r["failed"] for r in group),
                    "start_val_loss": start.mean,
                    "val_loss_mean": ci.mean,
                    "val_loss_lo": ci.lo,
                    "val_loss_hi": ci.hi,
                    "val_loss_sd": statistics.stdev(
                        [r["final_val_loss"] for r in group if r["final_val_loss"] is not None]
                    )
                    if ci.n >= 2
                    else None,
                }
            )
    return out


# ---- RMSNorm vs LayerNorm quality --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Quality:
    placement: str | None
    base: str
    other: str
    pairs: int
    base_loss: MeanCI
    other_loss: MeanCI
    diff: MeanCI  # other − base, paired by seed (nats)
    diff_pct: MeanCI  # as % of the base loss
    margin_pct: float


def quality(
    rows: Sequence[dict[str, Any]], margin_pct: float, base: str = "layernorm", other: str = "rmsnorm"
) -> Quality:
    """The two norms trained at the same placement, lr, warmup and depth, paired by seed."""
    q = [r for r in rows if "quality" in r["groups"]]
    placement = q[0]["placement"] if q else None
    by_seed: dict[int, dict[str, float | None]] = defaultdict(dict)
    for r in q:
        by_seed[r["seed"]][r["norm"]] = r["final_val_loss"]
    pairs = [(v[base], v[other]) for v in by_seed.values() if v.get(base) is not None and v.get(other) is not None]
    return Quality(
        placement,
        base,
        other,
        len(pairs),
        mean_ci([v.get(base) for v in by_seed.values()]),
        mean_ci([v.get(other) for v in by_seed.values()]),
        mean_ci([o - b for b, o in pairs]),
        mean_ci([100 * (o - b) / b for b, o in pairs]),
        margin_pct,
    )


# ---- the claims check ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimRow:
    key: str
    claim: str
    verdict: str  # a key of VERDICTS
    measured: str  # the numbers
    criterion: str
    details: dict[str, Any] = field(default_factory=dict)


def _pp(x: float) -> str:
    return f"{100 * x:+.0f} pp"


def _compare_rates(
    key: str,
    claim: str,
    criterion: str,
    worse: Sequence[dict[str, Any]],
    better: Sequence[dict[str, Any]],
    names: tuple[str, str],
    extra: str = "",
) -> ClaimRow:
    if not worse or not better:
        missing = names[0] if not worse else names[1]
        return ClaimRow(key, claim, "not_measured", f"no {missing} runs in this grid", criterion)
    a, b = rate(worse, "failed"), rate(better, "failed")
    da, db = rate(worse, "diverged"), rate(better, "diverged")
    nd = newcombe(a.k, a.n, b.k, b.n)
    assert nd is not None
    d, lo, hi = nd
    text = (
        f"failed: {names[0]} {a.k}/{a.n}, {names[1]} {b.k}/{b.n}; difference {_pp(d)} (95% CI {_pp(lo)} to {_pp(hi)}); "
        f"diverged: {names[0]} {da.k}/{da.n}, {names[1]} {db.k}/{db.n}" + (f"; {extra}" if extra else "")
    )
    verdict = "measured" if lo > 0 else "not_reproduced"
    return ClaimRow(key, claim, verdict, text, criterion, {"difference": d, "lo": lo, "hi": hi})


def claims(
    rows: Sequence[dict[str, Any]],
    ft: Sequence[dict[str, Any]],
    inits: Sequence[dict[str, Any]],
    margin_pct: float,
) -> list[ClaimRow]:
    grid = _grid(rows)
    out = []
    post = [r for r in grid if r["placement"] == "post_ln"]
    pre = [r for r in grid if r["placement"] == "pre_ln"]
    ranges = []
    for pl, group in (("Post-LN", post), ("Pre-LN", pre)):
        for depth in sorted({r["depth"] for r in group}):
            ranges.append(f"{pl} L{depth} trains at {lr_ranges_text(group, group[0]['placement'], depth)}")
    out.append(
        _compare_rates(
            "pre_ln_more_stable",
            "Pre-LN more stable than Post-LN",
            "same grid (lrs × warmups × seeds × depths); failed = diverged or no better than the unigram baseline; "
            "holds when the 95% CI of the failure-rate difference excludes 0",
            post,
            pre,
            ("Post-LN", "Pre-LN"),
            "; ".join(ranges),
        )
    )
    out.append(
        _compare_rates(
            "post_ln_unstable_small_finetune",
            "Post-LN unstable when fine-tuning on a small set",
            "pretrain, then fine-tune on one document at each fine-tuning lr × seed; failed = diverged or ended worse "
            "on the document's held-out part than where it started; holds when the difference's 95% CI excludes 0",
            [r for r in ft if r["placement"] == "post_ln"],
            [r for r in ft if r["placement"] == "pre_ln"],
            ("Post-LN", "Pre-LN"),
        )
    )
    ls0 = [r for r in grid if r["placement"] == "pre_ln_layerscale" and r["warmup"] == 0]
    pre0 = [r for r in pre if r["warmup"] == 0]
    g0 = {
        pl: statistics.median(gs)
        if (gs := [r["initial_grad_norm"] for r in grid if r["placement"] == pl and r["initial_grad_norm"]])
        else None
        for pl in ("pre_ln", "pre_ln_layerscale")
    }
    extra = ""
    if g0["pre_ln"] and g0["pre_ln_layerscale"]:
        extra = f"median first-step gradient norm: Pre-LN {g0['pre_ln']:.3g}, LayerScale {g0['pre_ln_layerscale']:.3g}"
    out.append(
        _compare_rates(
            "layerscale_init_stability",
            "LayerScale helps stability from initialisation",
            "Pre-LN with and without LayerScale (CaiT init), no warmup, same lrs × seeds; failed as above; holds when "
            "Pre-LN fails more often with the difference's 95% CI excluding 0",
            pre0,
            ls0,
            ("Pre-LN", "Pre-LN + LayerScale"),
            extra,
        )
    )
    q = quality(rows, margin_pct)
    crit = (
        f"{q.other} vs {q.base} at the same placement, lr, warmup and depth, paired by seed; equal when the 95% CI "
        f"of the loss difference lies within ±{margin_pct:g}% of the {q.base} loss"
    )
    if q.pairs == 0:
        out.append(
            ClaimRow(
                "rmsnorm_equal_quality",
                "RMSNorm matches LayerNorm quality",
                "not_measured",
                "no paired runs of both norms in this grid",
                crit,
            )
        )
    else:
        d = q.diff_pct
        base_txt = (
            f"{q.base} {q.base_loss.mean:.4f}, {q.other} {q.other_loss.mean:.4f} nats (means over {q.pairs} seeds)"
        )
        if d.lo is None or d.hi is None:
            verdict, text = "not_reproduced", f"{base_txt}; difference {d.mean:+.2f}% with no interval ({d.reason})"
        else:
            text = f"{base_txt}; difference {d.mean:+.2f}% (95% CI {d.lo:+.2f}% to {d.hi:+.2f}%)"
            if -margin_pct <= d.lo and d.hi <= margin_pct:
                verdict = "measured"
            else:
                verdict = "not_reproduced"
                text += "; " + (
                    "the qualities differ"
                    if d.lo > margin_pct or d.hi < -margin_pct
                    else "inconclusive: CI wider than the margin, add seeds"
                )
        out.append(
            ClaimRow(
                "rmsnorm_equal_quality",
                "RMSNorm matches LayerNorm quality",
                verdict,
                text,
                crit,
                {"diff_pct": d.mean, "lo": d.lo, "hi": d.hi},
            )
        )
    return out


@dataclass(frozen=True)
class Summary:
    """Everything a page, report or benchmark shows about one grid."""

    rows: list[dict[str, Any]]
    inits: list[dict[str, Any]]
    finetune: list[dict[str, Any]]
    divergence: list[dict[str, Any]]
    losses: list[dict[str, Any]]
    placements: list[dict[str, Any]]
    depth_ratios: list[dict[str, Any]]
    finetune_table: list[dict[str, Any]]
    quality: Quality
    claims: list[ClaimRow]
    wall_s: float
    cells_done: int


def summarize(cells: Sequence[dict[str, Any]], margin_pct: float = 1.0) -> Summary:
    rows, inits, ft = train_rows(cells), init_rows(cells), finetune_rows(cells)
    wall = 0.0
    for doc in cells:
        wall += doc.get("wall_s") or 0.0
        wall += (doc.get("pretrain") or {}).get("wall_s") or 0.0
        wall += sum(f.get("wall_s") or 0.0 for f in doc.get("finetune") or [])
    return Summary(
        rows,
        inits,
        ft,
        divergence_table(rows),
        loss_table(rows),
        placement_summary(rows),
        depth_ratios(inits),
        finetune_table(ft),
        quality(rows, margin_pct),
        claims(rows, ft, inits, margin_pct),
        wall,
        len(cells),
    )
