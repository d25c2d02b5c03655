"""Compare runs point by point: machines side by side, and regressions against a baseline.

Points match on (variant, impl, dtype, tokens, hidden, mode). A difference is
flagged only on the same machine, only beyond ±10%, and only when it is also
larger than the combined noise band of the two points; anything else is
"within noise" or, across machines, simply a machine difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KEY = ("variant", "impl", "dtype", "tokens", "hidden", "mode")
THRESHOLD_PCT = 10.0


def machine_key(run: dict[str, Any]) -> tuple:
    """What makes two runs 'the same machine': host, CPU model, and the GPU's UUID (or name)."""
    m = run.get("machine") or {}
    gpu = m.get("gpu") or {}
    return (
        m.get("hostname"),
        m.get("cpu_model"),
        run.get("spec", {}).get("device"),
        gpu.get("uuid") or gpu.get("name"),
    )


def sweep_key(run: dict[str, Any]) -> tuple:
    """What makes two runs 'the same sweep': everything measured, not the label or budgets."""
    s = run.get("spec") or {}
    return tuple(
        tuple(tuple(x) if isinstance(x, list) else x for x in s.get(k) or ())
        for k in ("variants", "impls", "shapes", "dtypes", "modes")
    )


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return machine_key(a) == machine_key(b)


def _noise_pct(p: dict[str, Any]) -> float:
    return 100.0 * (p["p80_us"] - p["p20_us"]) / (2.0 * p["p50_us"]) if p.get("p50_us") else math.inf


@dataclass(frozen=True)
class Row:
    key: tuple
    base: dict[str, Any]
    other: dict[str, Any]
    diff_pct: float  # other p50 relative to the baseline's, in %
    band_pct: float
    flag: str  # regression | faster | within noise | machine difference

    def as_dict(self) -> dict[str, Any]:
        variant, impl, dtype, tokens, hidden, mode = self.key
        return {
            "variant": variant,
            "impl": impl,
            "dtype": dtype,
            "shape": f"{tokens}×{hidden}",
            "mode": mode,
            "baseline p50 µs": self.base["p50_us"],
            "p50 µs": self.other["p50_us"],
            "diff %": self.diff_pct,
            "noise ±%": self.band_pct,
            "flag": self.flag,
            "baseline GB/s": self.base.get("gbps"),
            "GB/s": self.other.get("gbps"),
            "baseline % copy": self.base.get("roofline_pct"),
            "% copy": self.other.get("roofline_pct"),
            "baseline mJ/call": self.base.get("energy_mj_per_call"),
            "mJ/call": self.other.get("energy_mj_per_call"),
        }


def compare(base_points: Sequence[dict[str, Any]], other_points: Sequence[dict[str, Any]], same: bool) -> list[Row]:
    """Rows for every point timed in both runs, flagged as the module docstring says."""
    base = {tuple(p[k] for k in KEY): p for p in base_points if p["status"] == "ok" and p.get("p50_us")}
    rows = []
    for p in other_points:
        key = tuple(p[k] for k in KEY)
        b = base.get(key)
        if b is None or p["status"] != "ok" or not p.get("p50_us"):
            continue
        diff = 100.0 * (p["p50_us"] / b["p50_us"] - 1.0)
        band = math.hypot(_noise_pct(b), _noise_pct(p))
        if not same:
            flag = "machine difference"
        elif diff > THRESHOLD_PCT and diff > band:
            flag = "regression"
        elif diff < -THRESHOLD_PCT and -diff > band:
            flag = "faster"
        else:
            flag = "within noise"
        rows.append(Row(key, b, p, diff, band, flag))
    return rows
