"""How much memory a point will allocate, estimated before anything is allocated (no torch)."""

from __future__ import annotations

from ..catalog import VARIANTS


def estimate_point_bytes(variant: str, mode: str, tokens: int, hidden: int, elem_bytes: int) -> int:
    """A generous upper estimate of what one point allocates, to refuse before allocating.

    Inputs, outputs and (in training modes) their gradients in the point's dtype,
    their float64 copies for the reference, and four fp32 temporaries for eager code.
    """
    v = VARIANTS[variant]
    n = tokens * hidden
    act = sum(1 for name in v.inputs if name in ("x", "residual", "f")) + v.n_outputs
    factor = 2 if mode != "fwd" else 1
    return n * (act * factor * (elem_bytes + 8) + 4 * 4)
