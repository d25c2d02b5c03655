"""What is stored for one point: plain data, no torch, so readers stay light."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .spec import Point


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
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_point(cls, p: Point, device: str, status: str, error: str | None = None) -> PointResult:
        return cls(p.variant, p.impl, device, p.dtype, p.tokens, p.hidden, p.mode, status, error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
