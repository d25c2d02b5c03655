"""Bytes-moved model per variant and mode, and the roofline arithmetic (no torch).

Normalization layers are memory-bound, so the honest ceiling is the device's own
copy bandwidth measured in the same run (``profilers/measure/copyprobe.py``), and the honest work figure is the
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
    if achieved_gbps is None or not copy_gbps:
        return None
    return 100.0 * achieved_gbps / copy_gbps
