"""Compare runs point by point: machines side by side, and regressions against a baseline.

Points match on (variant, impl, dtype, tokens, hidden, mode). A difference is
flagged only on the same machine, only beyond ±10%, and only when it is also
larger than the combined noise band of the two points; anything else is
"within noise" or, across machines, simply a machine difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .noise import band_pct, difference

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


@dataclass(frozen=True)
class Row:
    """One point timed in both runs: the baseline's, the other's, and what the difference means."""

    key: tuple  # (variant, impl, dtype, tokens, hidden, mode)
    base: dict[str, Any]
    other: dict[str, Any]
    diff_pct: float  # other p50 relative to the baseline's, in %
    band_pct: float
    flag: str  # regression | faster | within noise | machine difference

    @property
    def variant(self) -> str:
        return self.key[0]

    @property
    def impl(self) -> str:
        return self.key[1]

    @property
    def dtype(self) -> str:
        return self.key[2]

    @property
    def tokens(self) -> int:
        return self.key[3]

    @property
    def hidden(self) -> int:
        return self.key[4]

    @property
    def mode(self) -> str:
        return self.key[5]


def match_points(
    base_points: Sequence[dict[str, Any]], other_points: Sequence[dict[str, Any]], same: bool
) -> list[Row]:
    """Rows for every point timed in both runs, flagged as the module docstring says."""
    base = {tuple(p[k] for k in KEY): p for p in base_points if p["status"] == "ok" and p.get("p50_us")}
    rows = []
    for p in other_points:
        key = tuple(p[k] for k in KEY)
        b = base.get(key)
        if b is None or p["status"] != "ok" or not p.get("p50_us"):
            continue
        d = difference(b["p50_us"], band_pct(b), p["p50_us"], band_pct(p))
        if not same:
            flag = "machine difference"
        elif d.diff_pct > THRESHOLD_PCT and d.measurable:
            flag = "regression"
        elif d.diff_pct < -THRESHOLD_PCT and d.measurable:
            flag = "faster"
        else:
            flag = "within noise"
        rows.append(Row(key, b, p, d.diff_pct, d.band_pct, flag))
    return rows
