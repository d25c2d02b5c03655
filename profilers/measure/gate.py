"""The correctness gate: every output and gradient against a float64 reference of the same formula.

A point beyond its dtype's tolerance (``catalog.TOLERANCES``) is failed and never timed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..catalog import TOLERANCES

Tensors = Sequence[torch.Tensor]


@dataclass(frozen=True)
class Errors:
    max_abs: float
    max_rel: float
    rel_l2: float
    worst: str  # which tensor was worst


def errors_vs_reference(actual: Tensors, expected: Tensors, names: Sequence[str]) -> Errors:
    """Scale-aware errors of each tensor against its float64 reference: the maxima over tensors."""
    max_abs = max_rel = rel_l2 = 0.0
    worst = names[0] if names else ""
    for a, e, name in zip(actual, expected, names, strict=True):
        d = a.detach().double() - e.detach()
        t_abs = d.abs().max().item()
        if not math.isfinite(t_abs):
            return Errors(math.inf, math.inf, math.inf, name)
        t_rel = t_abs / max(e.abs().max().item(), 1e-30)
        rel_l2 = max(rel_l2, d.norm().item() / max(e.norm().item(), 1e-30))
        max_abs = max(max_abs, t_abs)
        if t_rel > max_rel:
            max_rel, worst = t_rel, name
    return Errors(max_abs, max_rel, rel_l2, worst)


def upstream_grads(outputs: Tensors, gen: torch.Generator, dtype: torch.dtype) -> list[torch.Tensor]:
    """dy = y + unit noise, the same for every implementation of a point.

    Used for scalar parameters only (DyT's α): with a purely random dy, a scalar
    gradient is a sum of random-sign terms that can cancel to near zero, making
    its relative error meaningless and the gate flaky. Correlated with the output,
    as a real loss gradient is, the sum does not cancel.
    """
    return [
        (o.detach().float() + torch.randn(o.shape, generator=gen, device=o.device, dtype=torch.float32)).to(dtype)
        for o in outputs
    ]


def gate(errors: Errors, dtype: str) -> str | None:
    """The reason a point fails correctness, or None."""
    max_rel_tol, l2_tol = TOLERANCES[dtype]
    if not math.isfinite(errors.max_abs):
        return f"{errors.worst} has NaN or Inf where the float64 reference is finite"
    if errors.max_rel > max_rel_tol or errors.rel_l2 > l2_tol:
        return (
            f"{errors.worst} differs from the float64 reference: max rel err {errors.max_rel:.2e} "
            f"(tolerance {max_rel_tol:.1e}), rel L2 err {errors.rel_l2:.2e} (tolerance {l2_tol:.1e}) for {dtype}"
        )
    return None
