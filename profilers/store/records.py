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
    status: str  # ok | imprecise | unstable | skipped | failed (see catalog.POINT_STATUSES)
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
    # schema v3: correctness levels, cache state and cache-aware roofline, interleaved rounds and paired
    # ratios, disturbance, blocks
    gate: str | None = None  # pass | imprecise | wrong
    gate_note: str | None = None
    error_multiple: float | None = None  # worst error over the dtype's tolerance
    cache_state: str | None = None  # cold (flushed before each call) | warm
    working_set_bytes: int | None = None
    ceiling_gbps: float | None = None  # the copy ladder at this working set
    roofline_level: str | None = None  # L1 | L2 | L3 | DRAM (CPU caches) or L2 | HBM (GPU)
    rounds: int | None = None
    visits: int | None = None
    visits_disturbed: int | None = None
    ratio_baseline: str | None = None  # "variant impl" (or "placement variant impl") the ratio is against
    ratio: float | None = None  # median over rounds of this / baseline
    ratio_lo: float | None = None  # bootstrap 95% CI over rounds
    ratio_hi: float | None = None
    block: str | None = None  # None for a kernel point; the block family for a block point
    placement: str | None = None
    energy_loop_us: float | None = None  # µs per call inside the energy loop (unflushed, back to back)
    memops_per_call: float | None = None  # memsets/memcpys per call, counted apart from compute kernels
    extra: dict[str, Any] = field(default_factory=dict)  # sensors summary, kernel list, compile cache

    @classmethod
    def for_point(cls, p: Point, device: str, status: str, error: str | None = None) -> PointResult:
        return cls(p.variant, p.impl, device, p.dtype, p.tokens, p.hidden, p.mode, status, error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
