"""The correctness gate: every output and gradient against a float64 reference of the same formula.

Two levels (tolerances and rules in ``catalog.py``): a *wrong* point is failed and never timed; an
*imprecise* one (beyond its dtype's tolerance, yet right in float32) is timed, shown and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..catalog import WRONG_REL_L2, tolerance

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


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: ``pass``, ``imprecise`` (timed, flagged) or ``wrong`` (never timed), and why."""

    level: str
    note: str | None = None
    multiple: float | None = None  # the worst error over its tolerance

    @property
    def timed(self) -> bool:
        return self.level != "wrong"


def _beyond(errors: Errors, dtype: str, n_reduced: int, roundings: int = 1) -> float:
    """How far past the tolerance (the larger of the two ratios); ≤ 1 means within."""
    max_rel_tol, l2_tol = tolerance(dtype, n_reduced, roundings)
    return max(errors.max_rel / max_rel_tol, errors.rel_l2 / l2_tol)


def classify(
    errors: Errors,
    dtype: str,
    n_reduced: int,
    fp32_errors: Callable[[], Errors] | None = None,
    roundings: int = 1,
) -> Verdict:
    """Two levels (catalog.py says why): wrong → not timed; imprecise → timed and flagged; else pass.

    ``fp32_errors`` runs the same implementation in fp32 on the same inputs; it is called only for a
    half-precision point beyond its tolerance, to tell a logic error from rounding.
    """
    max_rel_tol, l2_tol = tolerance(dtype, n_reduced, roundings)
    if not math.isfinite(errors.max_abs):
        return Verdict("wrong", f"{errors.worst} has NaN or Inf where the float64 reference is finite")
    if errors.rel_l2 > WRONG_REL_L2:
        far = f"rel L2 err {errors.rel_l2:.2e} > {WRONG_REL_L2}"
        return Verdict("wrong", f"{errors.worst} is far from the float64 reference: {far}")
    multiple = _beyond(errors, dtype, n_reduced, roundings)
    if multiple <= 1:
        return Verdict("pass", None, multiple)
    detail = (
        f"max rel err {errors.max_rel:.2e} (tolerance {max_rel_tol:.1e}), rel L2 err {errors.rel_l2:.2e} "
        f"(tolerance {l2_tol:.1e})"
    )
    if dtype == "float32":
        return Verdict("wrong", f"{errors.worst} differs from the float64 reference in float32: {detail}", multiple)
    if fp32_errors is not None:
        e32 = fp32_errors()
        if not math.isfinite(e32.max_abs) or _beyond(e32, "float32", n_reduced) > 1:
            return Verdict(
                "wrong",
                f"{e32.worst} is wrong in float32 too (max rel err {e32.max_rel:.2e}, rel L2 err {e32.rel_l2:.2e}): "
                "a logic error, not rounding",
                multiple,
            )
    return Verdict(
        "imprecise",
        f"{errors.worst} is {multiple:.1f}× past the {dtype} tolerance: {detail}; correct in float32",
        multiple,
    )
