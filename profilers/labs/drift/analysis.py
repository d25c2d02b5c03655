"""Drift scores from normalization statistics: profiles, shift scores, calibrated thresholds (no torch).

A normalization layer sees the distribution its model was trained on; when the
input data moves, the statistics of the norms' inputs move with it. The measuring
side (``measure.py`` beside it) hooks every norm layer and hands over, per
layer, the per-row statistics (mean, RMS, max-abs, variance of each row of the
norm's input) and per-channel sums. This module turns them into:

- a **profile**: per-channel mean, standard deviation and max-abs, the fraction of
  low-variance rows, and a seeded sample of the per-row statistics of the
  reference data (a versioned JSON document, validated on load);
- **shift scores** for new data, per layer: the two-sample Kolmogorov-Smirnov
  statistic D of each per-row statistic against the reference sample, and the
  root-mean-square over channels of the standardized mean difference;
- a **calibrated threshold**: each component is standardized by its mean and
  spread over held-out in-distribution windows, a layer's score is its largest
  standardized component, the model's score is its largest layer score, and the
  thresholds are the conformal (1 − α) quantiles of those scores on the held-out
  windows, so an in-distribution window raises a false alarm with probability at
  most α (when windows are exchangeable).

Rows within a window come from the same text or batch and are not independent,
so the KS p-value is shown for reference only: alarms come from the calibrated
threshold, never from the p-value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_FORMAT = "normscope-drift-profile"
PROFILE_VERSION = 1
ROW_STATS: tuple[str, ...] = ("mean", "rms", "maxabs")
COMPONENTS: tuple[str, ...] = ("ks_mean", "ks_rms", "ks_maxabs", "smd_rms")
COMPONENT_HELP = {
    "ks_mean": "KS D of the per-row mean",
    "ks_rms": "KS D of the per-row RMS",
    "ks_maxabs": "KS D of the per-row max |x|",
    "smd_rms": "RMS over channels of the standardized mean difference",
}
# a row is low-variance when its variance is below this fraction of the reference's median row variance
LOW_VAR_REL = 1e-3
# KS D and the SMD are dimensionless and O(0.01-1): a component that never varies on held-out data gets this spread,
# so a deviation of a thousandth cannot become an alarm
_SD_FLOOR = 1e-3
MAX_LAYERS = 4096


class ProfileError(ValueError):
    """A profile file or document NormScope cannot use; the message names the problem and the fix."""


@dataclass
class LayerSample:
    """What one norm layer's input looked like over some data: per-row statistics and per-channel sums."""

    name: str
    kind: str
    channels: int
    row: dict[str, np.ndarray]  # ROW_STATS + "var": one value per row
    ch_sum: np.ndarray
    ch_sumsq: np.ndarray
    ch_maxabs: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.row["mean"])

    def channel_mean(self) -> np.ndarray:
        return self.ch_sum / max(self.rows, 1)

    def channel_std(self) -> np.ndarray:
        n = max(self.rows, 1)
        var = self.ch_sumsq / n - (self.ch_sum / n) ** 2
        return np.sqrt(np.maximum(var, 0.0))

    @staticmethod
    def merge(parts: Sequence[LayerSample]) -> LayerSample:
        """One sample from several (the batches of one window, or the reference batches)."""
        first = parts[0]
        return LayerSample(
            first.name,
            first.kind,
            first.channels,
            {k: np.concatenate([p.row[k] for p in parts]) for k in first.row},
            np.sum([p.ch_sum for p in parts], axis=0),
            np.sum([p.ch_sumsq for p in parts], axis=0),
            np.max([p.ch_maxabs for p in parts], axis=0),
        )


Window = Mapping[str, LayerSample]


# -- the two-sample Kolmogorov-Smirnov test ---------------------------------------------
def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """D = sup |F_a(x) − F_b(x)| of the two empirical distribution functions (ties handled exactly)."""
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    if len(x) == 0 or len(y) == 0:
        raise ValueError("the KS statistic needs two non-empty samples")
    grid = np.concatenate([x, y])
    fa = np.searchsorted(x, grid, side="right") / len(x)
    fb = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.max(np.abs(fa - fb)))


def kolmogorov_sf(lam: float) -> float:
    """P(K > λ) for the Kolmogorov distribution: 2 Σ (−1)^(k−1) exp(−2k²λ²)."""
    if lam <= 0:
        return 1.0
    if lam < 0.2:  # the alternating series converges slowly here and the value is 1 to 1e-10
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-16:
            break
    return min(1.0, max(0.0, total))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Asymptotic p-value of D for samples of sizes n and m (Stephens' small-sample correction)."""
    ne = n * m / (n + m)
    sq = math.sqrt(ne)
    return kolmogorov_sf((sq + 0.12 + 0.11 / sq) * d)


# -- profiles -------------------------------------------------------------------------------
def _floats(values: np.ndarray | Sequence[float]) -> list[float]:
    """Full precision: a statistic that barely varies (the RMS after an RMSNorm) must not be rounded into ties."""
    return [float(v) for v in values]


def _subsample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def profile_layer(ref: LayerSample, sample_rows: int, seed: int) -> dict[str, Any]:
    """One layer of a profile from its reference sample."""
    if ref.rows < 2:
        raise ProfileError(f"layer {ref.name} saw {ref.rows} row(s) of reference data: give more reference batches")
    median_var = float(np.median(ref.row["var"]))
    threshold = LOW_VAR_REL * median_var
    keep = _subsample(ref.rows, sample_rows, seed)
    return {
        "name": ref.name,
        "kind": ref.kind,
        "channels": ref.channels,
        "rows": ref.rows,
        "channel_mean": _floats(ref.channel_mean()),
        "channel_std": _floats(ref.channel_std()),
        "channel_maxabs": _floats(ref.ch_maxabs),
        "low_var_threshold": threshold,
        "low_var_fraction": float(np.mean(ref.row["var"] < threshold)),
        "samples": {k: _floats(ref.row[k][keep]) for k in ROW_STATS},
    }


def components(layer: Mapping[str, Any], new: LayerSample) -> dict[str, float]:
    """Raw shift components of one layer: KS D per row statistic, RMS of per-channel standardized mean differences."""
    out = {f"ks_{k}": ks_statistic(layer["samples"][k], new.row[k]) for k in ROW_STATS}
    mean = np.asarray(layer["channel_mean"], dtype=np.float64)
    std = np.asarray(layer["channel_std"], dtype=np.float64)
    out["smd_rms"] = float(np.sqrt(np.mean(channel_smd(mean, std, new) ** 2)))
    return out


def channel_smd(mean: np.ndarray, std: np.ndarray, new: LayerSample) -> np.ndarray:
    """Per channel: (new mean − reference mean) / reference std, the std floored at 1e-6 of the typical std."""
    floor = max(float(np.median(std)) * 1e-6, 1e-12)
    return (new.channel_mean() - mean) / np.maximum(std, floor)


def _conformal_quantile(scores: Sequence[float], alpha: float) -> float:
    """The ⌈(K+1)(1−α)⌉-th smallest of K scores: an exchangeable new score exceeds it with probability ≤ α."""
    s = sorted(scores)
    k = math.ceil((len(s) + 1) * (1 - alpha))
    if k > len(s):
        raise ProfileError(
            f"{len(s)} calibration windows cannot calibrate a {alpha:.3g} false-alarm rate: "
            f"give at least {min_windows(alpha)} windows or a larger --alpha"
        )
    return float(s[k - 1])


def calibration_spread(windows: int, alpha: float) -> tuple[float, float]:
    """Mean and standard deviation of the false-alarm rate one calibration on ``windows`` held-out windows gives.

    With the conformal quantile k = ⌈(K+1)(1−α)⌉, the rate on new exchangeable windows is Beta(K+1−k, k)
    distributed over calibrations: its mean is at most α, and one calibration lands within about a standard
    deviation of it. A measured false-alarm rate is judged against this spread, not against α alone.
    """
    k = math.ceil((windows + 1) * (1 - alpha))
    a, b = windows + 1 - k, k
    return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def min_windows(alpha: float) -> int:
    """The fewest held-out windows that calibrate false-alarm rate ``alpha``."""
    return math.ceil((1 - alpha) / alpha - 1e-9)


def _standardize(comp: Mapping[str, float], stats: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {c: (comp[c] - stats[c]["mean"]) / max(stats[c]["sd"], _SD_FLOOR) for c in COMPONENTS}


def build_profile(
    reference: Window,
    calibration: Sequence[Window],
    alpha: float,
    sample_rows: int = 2000,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A profile from reference data and held-out in-distribution windows, calibrated to false-alarm rate α."""
    if not reference:
        raise ProfileError("the model has no normalization layer NormScope can hook: nothing to profile")
    if not 0 < alpha < 0.5:
        raise ProfileError(f"alpha {alpha} must be in (0, 0.5): a false-alarm rate such as 0.05")
    if len(calibration) < min_windows(alpha):
        raise ProfileError(
            f"{len(calibration)} calibration windows cannot calibrate a {alpha:.3g} false-alarm rate: "
            f"give at least {min_windows(alpha)} windows or a larger --alpha"
        )
    layers = [profile_layer(s, sample_rows, seed + i) for i, s in enumerate(reference.values())]
    raw = []
    for w in calibration:
        missing = [name for name in reference if name not in w]
        if missing:
            raise ProfileError(f"a calibration window never reached layer {missing[0]}: every batch must run the model")
        raw.append({lay["name"]: components(lay, w[lay["name"]]) for lay in layers})
    comp_stats = {
        lay["name"]: {
            c: {
                "mean": float(np.mean([r[lay["name"]][c] for r in raw])),
                "sd": float(np.std([r[lay["name"]][c] for r in raw])),
            }
            for c in COMPONENTS
        }
        for lay in layers
    }
    layer_scores = {
        lay["name"]: [max(_standardize(r[lay["name"]], comp_stats[lay["name"]]).values()) for r in raw]
        for lay in layers
    }
    model_scores = [max(layer_scores[lay["name"]][i] for lay in layers) for i in range(len(raw))]
    doc = {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "meta": dict(meta or {}),
        "alpha": alpha,
        "layers": layers,
        "calibration": {
            "windows": len(raw),
            "alpha": alpha,
            "rule": "conformal (1-alpha) quantile of held-out in-distribution window scores",
            "components": comp_stats,
            "layer_threshold": {n: _conformal_quantile(s, alpha) for n, s in layer_scores.items()},
            "model_threshold": _conformal_quantile(model_scores, alpha),
            "model_scores": _floats(model_scores),
        },
    }
    validate_profile(doc)
    return doc


# -- scoring new data ---------------------------------------------------------------------------
def score_window(profile: Mapping[str, Any], window: Window, top_channels: int = 5) -> dict[str, Any]:
    """Per-layer and model scores of one window of new data against a profile, with the layers that moved most."""
    cal = profile["calibration"]
    layers: dict[str, dict[str, Any]] = {}
    for lay in profile["layers"]:
        name = lay["name"]
        if name not in window:
            raise ProfileError(f"the data never reached layer {name}: is this the model the profile was made from?")
        new = window[name]
        if new.channels != lay["channels"]:
            raise ProfileError(
                f"layer {name} has {new.channels} channels but the profile has {lay['channels']}: "
                "check against the model the profile was made from"
            )
        comp = components(lay, new)
        z = _standardize(comp, cal["components"][name])
        score = max(z.values())
        smd = channel_smd(np.asarray(lay["channel_mean"]), np.asarray(lay["channel_std"]), new)
        order = np.argsort(-np.abs(smd))[:top_channels]
        layers[name] = {
            "components": comp,
            "z": z,
            "score": score,
            "threshold": cal["layer_threshold"][name],
            "alarm": score > cal["layer_threshold"][name],
            "ks_p": {k: ks_pvalue(comp[f"ks_{k}"], len(lay["samples"][k]), new.rows) for k in ROW_STATS},
            "low_var_fraction": float(np.mean(new.row["var"] < lay["low_var_threshold"])),
            "top_channels": [{"channel": int(c), "smd": float(smd[c])} for c in order],
            "rows": new.rows,
        }
    model_score = max(v["score"] for v in layers.values())
    ranked = sorted(layers, key=lambda n: layers[n]["score"] - layers[n]["threshold"], reverse=True)
    return {
        "layers": layers,
        "model_score": model_score,
        "model_threshold": cal["model_threshold"],
        "alarm": model_score > cal["model_threshold"],
        "moved_most": ranked[:3],
    }


def summarize(profile: Mapping[str, Any], scored: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Many scored windows of one data set: the alarm (detection) rate, and per layer the mean score and alarm rate."""
    if not scored:
        raise ProfileError("no windows of new data to check: give more data (at least one full window)")
    names = [lay["name"] for lay in profile["layers"]]
    per_layer = {
        n: {
            "mean_score": float(np.mean([s["layers"][n]["score"] for s in scored])),
            "alarm_rate": float(np.mean([s["layers"][n]["alarm"] for s in scored])),
            "threshold": profile["calibration"]["layer_threshold"][n],
            "mean_components": {
                c: float(np.mean([s["layers"][n]["components"][c] for s in scored])) for c in COMPONENTS
            },
            "low_var_fraction": float(np.mean([s["layers"][n]["low_var_fraction"] for s in scored])),
            "reference_low_var_fraction": next(
                lay["low_var_fraction"] for lay in profile["layers"] if lay["name"] == n
            ),
        }
        for n in names
    }
    excess = {n: per_layer[n]["mean_score"] - per_layer[n]["threshold"] for n in names}
    return {
        "windows": len(scored),
        "alarm_rate": float(np.mean([s["alarm"] for s in scored])),
        "mean_model_score": float(np.mean([s["model_score"] for s in scored])),
        "model_threshold": profile["calibration"]["model_threshold"],
        "alpha": profile["calibration"]["alpha"],
        "layers": per_layer,
        "moved_most": sorted(names, key=lambda n: excess[n], reverse=True)[:3],
    }


VERDICT_P = 0.01  # drift is declared when this many alarms would happen by chance with probability below 1%


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), summed in log space (stable for thousands of windows)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def verdict(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Drift or not over many windows: each in-distribution window alarms with probability ≤ α, so k alarms in n
    windows are drift when P(Binomial(n, α) ≥ k) < 1%; one window is judged by its own alarm."""
    n, alpha = summary["windows"], summary["alpha"]
    k = round(summary["alarm_rate"] * n)
    p = binomial_tail(k, n, alpha)
    drift = p < VERDICT_P if n > 1 else k == 1
    moved = ", ".join(summary["moved_most"])
    text = (
        f"drift: {k} of {n} windows alarmed (alarm rate {k / n:.0%}, calibrated false-alarm rate {alpha:.0%}; "
        f"chance of this many in distribution {p:.2g}); moved most: {moved}"
        if drift
        else f"no drift detected: {k} of {n} windows alarmed (calibrated false-alarm rate {alpha:.0%}, "
        f"chance of this many in distribution {p:.2g})"
    )
    return {"drift": drift, "alarms": k, "windows": n, "p_value": p, "text": text}


# -- profile files: versioned, validated on load ------------------------------------------------
_FIX = "re-create it with `python -m profilers drift profile`"


def _finite_list(where: str, v: Any, n: int | None = None) -> None:
    if not isinstance(v, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
    ):
        raise ProfileError(f"{where} should be a list of finite numbers: {_FIX}")
    if n is not None and len(v) != n:
        raise ProfileError(f"{where} has {len(v)} values for {n} channels: {_FIX}")


def _number(where: str, v: Any, lo: float = -math.inf, hi: float = math.inf) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProfileError(f"{where} should be a finite number in [{lo}, {hi}], got {v!r}: {_FIX}")


def validate_profile(doc: Any) -> dict[str, Any]:
    """Check a profile field by field; ProfileError (one line, with the fix) on the first problem."""
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise ProfileError(f'not a NormScope drift profile (expected "format": "{PROFILE_FORMAT}"): {_FIX}')
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProfileError(f"the profile has no valid version: {_FIX}")
    if version > PROFILE_VERSION:
        raise ProfileError(f"the profile is version {version}, newer than this NormScope's {PROFILE_VERSION}: upgrade")
    _number("alpha", doc.get("alpha"), 1e-6, 0.5)
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
        raise ProfileError(f"the profile has no layers list: {_FIX}")
    names: list[str] = []
    for i, lay in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(lay, dict):
            raise ProfileError(f"{where} is not an object: {_FIX}")
        name, ch = lay.get("name"), lay.get("channels")
        if not isinstance(name, str) or not name or name in names:
            raise ProfileError(f"{where}.name is missing or repeated: {_FIX}")
        names.append(name)
        if not isinstance(lay.get("kind"), str):
            raise ProfileError(f"{where}.kind should be text: {_FIX}")
        if isinstance(ch, bool) or not isinstance(ch, int) or ch < 1:
            raise ProfileError(f"{where}.channels should be a whole number ≥ 1: {_FIX}")
        if isinstance(lay.get("rows"), bool) or not isinstance(lay.get("rows"), int) or lay["rows"] < 2:
            raise ProfileError(f"{where}.rows should be a whole number ≥ 2: {_FIX}")
        for key in ("channel_mean", "channel_std", "channel_maxabs"):
            _finite_list(f"{where}.{key}", lay.get(key), ch)
        if any(s < 0 for s in lay["channel_std"]):
            raise ProfileError(f"{where}.channel_std has a negative value: {_FIX}")
        _number(f"{where}.low_var_threshold", lay.get("low_var_threshold"), 0.0)
        _number(f"{where}.low_var_fraction", lay.get("low_var_fraction"), 0.0, 1.0)
        samples = lay.get("samples")
        if not isinstance(samples, dict) or set(samples) != set(ROW_STATS):
            raise ProfileError(f"{where}.samples should hold {', '.join(ROW_STATS)}: {_FIX}")
        for k in ROW_STATS:
            _finite_list(f"{where}.samples.{k}", samples[k])
            if not samples[k]:
                raise ProfileError(f"{where}.samples.{k} is empty: {_FIX}")
    cal = doc.get("calibration")
    if not isinstance(cal, dict):
        raise ProfileError(f"the profile has no calibration: {_FIX}")
    _number("calibration.model_threshold", cal.get("model_threshold"))
    _number("calibration.alpha", cal.get("alpha"), 1e-6, 0.5)
    if isinstance(cal.get("windows"), bool) or not isinstance(cal.get("windows"), int) or cal["windows"] < 1:
        raise ProfileError(f"calibration.windows should be a whole number ≥ 1: {_FIX}")
    thresholds, comps = cal.get("layer_threshold"), cal.get("components")
    if not isinstance(thresholds, dict) or not isinstance(comps, dict):
        raise ProfileError(f"calibration lacks layer thresholds or component statistics: {_FIX}")
    for name in names:
        _number(f"calibration.layer_threshold[{name}]", thresholds.get(name))
        c = comps.get(name)
        if not isinstance(c, dict) or set(c) != set(COMPONENTS):
            raise ProfileError(f"calibration.components[{name}] should hold {', '.join(COMPONENTS)}: {_FIX}")
        for comp in COMPONENTS:
            if not isinstance(c[comp], dict):
                raise ProfileError(f"calibration.components[{name}].{comp} is not an object: {_FIX}")
            _number(f"calibration.components[{name}].{comp}.mean", c[comp].get("mean"))
            _number(f"calibration.components[{name}].{comp}.sd", c[comp].get("sd"), 0.0)
    if not isinstance(doc.get("meta", {}), dict):
        raise ProfileError(f"meta should be an object: {_FIX}")
    return doc


def load_profile(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a profile file; ProfileError with one line when it is missing, not JSON or invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(
            f"no profile file {p}: make one with `python -m profilers drift profile -o {p.name}`"
        ) from None
    except IsADirectoryError:
        raise ProfileError(f"{p} is a folder: give the profile's JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"cannot read profile {p}: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{p} is not JSON ({e.msg} at line {e.lineno}): {_FIX}") from None
    try:
        return validate_profile(doc)
    except ProfileError as e:
        raise ProfileError(f"{p}: {e}") from None


def profile_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
