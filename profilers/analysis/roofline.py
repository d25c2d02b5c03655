"""Bytes-moved model per variant and mode, and the roofline arithmetic (no torch).

Normalization layers are memory-bound, so the honest ceiling is the device's own
copy bandwidth measured in the same run (``profilers/measure/machine/copyprobe.py``), and the honest work figure is the
*minimum* traffic any implementation must cause (E = bytes per element of the
activation dtype, N = tokens × hidden, P = parameter elements):

forward (reads every input once, writes every output once)
  layernorm, batchnorm, groupnorm, rmsnorm, dyt:  2·N·E + P·E
  layerscale  (x, f → y):                         3·N·E + P·E
  add_rmsnorm (x, r → y, x+r):                    4·N·E + P·E

backward (reads x — or the saved sum — and dy; writes dx and parameter grads)
  layernorm, batchnorm, groupnorm, rmsnorm, dyt:  3·N·E + 2·P·E
  layerscale  (dy, f → df; dx = dy is free):      3·N·E + 2·P·E
  add_rmsnorm (h, dy, dh → dx = dr, one tensor):  4·N·E + 2·P·E

fwdbwd is the sum of the two. Statistics (a few floats per row) are ignored: they
are < 1% of the traffic for hidden ≥ 256.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from ..catalog import VARIANTS

_FWD_TENSORS = {"layerscale": 3, "add_rmsnorm": 4}
_BWD_TENSORS = {"add_rmsnorm": 4}


def bytes_moved(variant: str, mode: str, tokens: int, hidden: int, elem_bytes: int) -> int:
    n = tokens * hidden
    p = VARIANTS[variant].param_numel(hidden)
    fwd = _FWD_TENSORS.get(variant, 2) * n * elem_bytes + p * elem_bytes
    bwd = _BWD_TENSORS.get(variant, 3) * n * elem_bytes + 2 * p * elem_bytes
    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwd + bwd}[mode]


def gbps(nbytes: int, p50_us: float) -> float | None:
    if p50_us <= 0:
        return None
    return nbytes / (p50_us * 1e-6) / 1e9


def roofline_pct(achieved_gbps: float | None, copy_gbps: float | None) -> float | None:
    """Effective GB/s (minimum-traffic model) as % of the copy ceiling (the ladder at the point's size)."""
    if achieved_gbps is None or not copy_gbps:
        return None
    return 100.0 * achieved_gbps / copy_gbps


# -- the copy ladder: the ceiling at each working-set size ------------------------------------------
@dataclass(frozen=True)
class Ladder:
    """Copy bandwidth measured at several working-set sizes (bytes read + written), on one device and timer.

    ``caches`` are the device's cache sizes by level; ``cache_state`` is the timer's (GPU cold ladders are
    flushed, so every rung is a DRAM figure there).
    """

    rungs: list[tuple[int, float]]  # (working_set_bytes, gbps), ascending
    caches: dict[str, int]
    device_type: str
    cache_state: str = "warm"

    def ceiling_gbps(self, working_set_bytes: int) -> float | None:
        """The ladder at this size: log-log interpolation between rungs, flat beyond the ends."""
        r = sorted(self.rungs)
        if not r:
            return None
        if working_set_bytes <= r[0][0]:
            return r[0][1]
        if working_set_bytes >= r[-1][0]:
            return r[-1][1]
        for (s0, g0), (s1, g1) in itertools.pairwise(r):
            if s0 <= working_set_bytes <= s1:
                t = (math.log(working_set_bytes) - math.log(s0)) / (math.log(s1) - math.log(s0))
                return math.exp(math.log(g0) + t * (math.log(g1) - math.log(g0)))
        return r[-1][1]

    @property
    def top_gbps(self) -> float | None:
        """The largest rung: the device-memory copy figure (the run's ``copy_gbps``)."""
        return max(self.rungs)[1] if self.rungs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rungs": [[int(s), float(g)] for s, g in sorted(self.rungs)],
            "caches": dict(self.caches),
            "device_type": self.device_type,
            "cache_state": self.cache_state,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ladder:
        return cls([(int(s), float(g)) for s, g in d["rungs"]], dict(d["caches"]), d["device_type"], d["cache_state"])


def cache_level(working_set_bytes: int, caches: dict[str, int], device_type: str, cache_state: str) -> str:
    """Where a working set lives between calls: L1/L2/L3/DRAM on CPUs, L2/HBM on GPUs (cold: always HBM)."""
    memory = "DRAM" if device_type == "cpu" else "HBM"
    if device_type != "cpu" and cache_state == "cold":
        return memory
    for level in sorted(caches):
        if working_set_bytes <= caches[level]:
            return level
    return memory
