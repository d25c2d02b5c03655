"""What is stored for one point: plain data, no torch, so readers stay light."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..spec import Point


@dataclass
class PointResult:
    """Everything stored for one point; units end every numeric name."""

    variant: str
    impl: str
    device: str
    dtype: str
    tokens: int
    hidden: int
    mode: str
    status: str  # ok | skipped | failed
    error: str | None = None
    timing_method: str | None = None
    threads: int | None = None
    n_samples: int | None = None
    calls_per_sample: int | None = None
    p20_us: float | None = None
    p50_us: float | None = None
    p80_us: float | None = None
    mean_us: float | None = None
    iqr_us: float | None = None
    noisy: bool | None = None
    bytes_moved: int | None = None
    gbps: float | None = None
    roofline_pct: float | None = None
    peak_bytes: int | None = None
    peak_note: str | None = None
    saved_bytes: int | None = None
    saved_note: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    rel_l2_err: float | None = None
    compile_s: float | None = None
    # schema v2: energy (None plus energy_note when not measured) and kernel breakdown
    energy_method: str | None = None
    energy_note: str | None = None
    energy_window_s: float | None = None
    energy_repeats: int | None = None
    energy_mj_per_call: float | None = None
    energy_j_per_mtok: float | None = None
    energy_mean_power_w: float | None = None
    energy_spread_pct: float | None = None
    energy_dynamic_mj_per_call: float | None = None
    kernels_per_call: float | None = None
    kernel_us_per_call: float | None = None
    launch_overhead_pct: float | None = None
    trace_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # sensors summary, kernel list, compile cache

    @classmethod
    def for_point(cls, p: Point, device: str, status: str, error: str | None = None) -> PointResult:
        return cls(p.variant, p.impl, device, p.dtype, p.tokens, p.hidden, p.mode, status, error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
