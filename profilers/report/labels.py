"""What people read: column labels with units, one-line explanations, and number formats.

Data keys are identifiers (``p50_us``); the labels here are put on at the table
or chart, never used as keys. The dashboard, the report and the CLI read the
same labels, so one quantity is named and formatted the same way everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from ..analysis.noise import NOISY_RULE

# identifier → column label (units in the label)
COLUMNS: dict[str, str] = {
    "run_id": "run",
    "variant": "variant",
    "impl": "implementation",
    "dtype": "dtype",
    "mode": "mode",
    "shape": "shape (tokens×hidden)",
    "tokens": "tokens",
    "hidden": "hidden",
    "status": "status",
    "error": "reason",
    "p20_us": "p20 (µs)",
    "p50_us": "p50 (µs)",
    "p80_us": "p80 (µs)",
    "iqr_us": "IQR (µs)",
    "n_samples": "samples",
    "noisy": "noisy",
    "gbps": "effective GB/s",
    "roofline_pct": "% of copy roofline",
    "peak_bytes": "peak memory (MiB)",
    "saved_bytes": "saved for backward (MiB)",
    "max_rel_err": "max rel error",
    "rel_l2_err": "rel L2 error",
    "compile_s": "compile (s)",
    "energy_mj_per_call": "energy (mJ/call)",
    "energy_j_per_mtok": "energy (J per M tokens)",
    "energy_mean_power_w": "mean power (W)",
    "energy_spread_pct": "energy spread (%)",
    "kernels_per_call": "kernels per call",
    "launch_overhead_pct": "launch overhead (%)",
    "timing_method": "timing method",
    "threads": "threads",
    "base_p50_us": "baseline p50 (µs)",
    "diff_pct": "change (%)",
    "band_pct": "noise band (±%)",
    "flag": "verdict",
}

# the columns of a full table of points (Results page, report), in order
POINT_TABLE = (
    "run_id",
    "variant",
    "impl",
    "dtype",
    "mode",
    "tokens",
    "hidden",
    "status",
    "p20_us",
    "p50_us",
    "p80_us",
    "noisy",
    "gbps",
    "roofline_pct",
    "peak_bytes",
    "max_rel_err",
    "compile_s",
    "energy_mj_per_call",
    "energy_mean_power_w",
    "kernels_per_call",
    "timing_method",
    "error",
)

# a term → one line for people, shown where it first appears
HELP: dict[str, str] = {
    "eager": "the textbook formula written as separate torch ops (one kernel per op)",
    "native": "torch's own fused operator (e.g. F.layer_norm), where one exists",
    "compiled": "torch.compile of the eager formula, compiled fresh for each shape",
    "p20-p80": "the middle 60% of the timing samples: 20% of calls were faster than p20, 20% slower than p80",
    "noisy": f"the samples disagree too much to trust the median alone ({NOISY_RULE}); drawn hollow",
    "roofline": "effective bandwidth (the minimum bytes the variant must move ÷ time) as a share of a plain copy's "
    "bandwidth measured on the same device in the same run",
    "tie": "the difference is inside the combined noise of the two measurements: no measurable difference",
}


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def na(value: Any, fmt: str = "{:,.1f}", reason: str | None = None) -> str:
    """Display a reading; a missing one is N/A (with its reason), never 0."""
    if is_missing(value):
        return f"N/A ({reason})" if reason else "N/A"
    return fmt.format(value)


def number(v: Any, digits: int = 4) -> str:
    """A number for people: thousands separators, about ``digits`` significant digits, never an exponent.

    10179.3 → "10,179"; 253.12 → "253.1"; 4.0712 → "4.071"; 0.000512 → "0.000512".
    """
    if is_missing(v):
        return "N/A"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or (abs(v) >= 10 ** (digits - 1)):
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def percent(v: Any, signed: bool = False, decimals: int = 1) -> str:
    if is_missing(v):
        return "N/A"
    return f"{v:+.{decimals}f}%" if signed else f"{v:.{decimals}f}%"


def mib(nbytes: Any) -> str:
    return "N/A" if is_missing(nbytes) else number(nbytes / 2**20)


def shape(tokens: int, hidden: int) -> str:
    return f"{tokens}×{hidden}"


def tick(n: int) -> str:
    """An axis tick for a count: 16,384 (never 16.384k)."""
    return f"{n:,}"


_BYTES_AS_MIB = {"peak_bytes", "saved_bytes"}
_SIGNED_PCT = {"diff_pct"}


def cell(key: str, value: Any) -> str:
    """A stored value under its column label: bytes shown in MiB, numbers without exponents, N/A when missing."""
    if is_missing(value):
        return "N/A"
    if key in _BYTES_AS_MIB:
        return mib(value)
    if key in _SIGNED_PCT:
        return percent(value, signed=True)
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float) and key.endswith("_err"):
        return f"{value:.2e}"
    return number(value)


def for_table(key: str, value: Any) -> Any:
    """A stored value converted to its column's unit for an interactive table (bytes → MiB)."""
    if key in _BYTES_AS_MIB and not is_missing(value):
        return value / 2**20
    return value
