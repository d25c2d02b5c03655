"""The correctness gate: every output and gradient against a float64 reference of the same formula.

Two levels (tolerances and rules in ``catalog.py``): a *wrong* point is failed and never timed; an
*imprecise* one (beyond its dtype's tolerance, yet right in float32) is timed, shown and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...catalog import WRONG_REL_L2, tolerance

Tensors = Sequence[torch.Tensor]


@dataclass(frozen=True)
class Errors:
    max_abs: float
    max_rel: float
    rel_l2: float
    worst: str  # which tensor was worst
    # tensors with elements whose float64 reference lies beyond the dtype's largest finite value and that came
    # out as the infinity of the same sign, i.e. rounded correctly: (name, the largest such |reference|, dtype)
    overflow: tuple[tuple[str, float, str], ...] = ()


def _beyond_range(a: torch.Tensor, e: torch.Tensor) -> torch.Tensor | None:
    """Where the reference ``e`` lies beyond ``a``'s dtype range and ``a`` holds the infinity of that sign (the
    correctly rounded value); None when there is no such element."""
    if not a.dtype.is_floating_point or a.dtype == torch.float64:
        return None
    fi = torch.finfo(a.dtype)
    # round to nearest: from the largest value plus half its ulp on, a value rounds to infinity (65520 in fp16)
    half_ulp = fi.max * fi.eps / (2 * (2 - fi.eps))  # the largest value is (2 - eps) · 2^emax, its ulp eps · 2^emax
    over = e.abs() >= fi.max + half_ulp
    if not bool(over.any()):
        return None
    return over & torch.isinf(a) & (torch.sign(a.double()) == torch.sign(e))


def errors_vs_reference(actual: Tensors, expected: Tensors, names: Sequence[str]) -> Errors:
    """Scale-aware errors of each tensor against its float64 reference: the maxima over tensors.

    An element whose reference the dtype cannot hold (beyond its largest finite value) and that came out as
    the infinity of the same sign is left out of the errors and named in ``overflow``; any other NaN or Inf
    makes every error infinite."""
    max_abs = max_rel = rel_l2 = 0.0
    worst = names[0] if names else ""
    overflow: list[tuple[str, float, str]] = []
    for got, want, name in zip(actual, expected, names, strict=True):
        a, e = got.detach(), want.detach()
        rounded_to_inf = _beyond_range(a, e)
        if rounded_to_inf is not None and bool(rounded_to_inf.any()):
            overflow.append((name, e[rounded_to_inf].abs().max().item(), str(a.dtype).removeprefix("torch.")))
            keep = ~rounded_to_inf
            a, e = a[keep], e[keep]
            if a.numel() == 0:
                continue
        d = a.double() - e
        t_abs = d.abs().max().item()
        if not math.isfinite(t_abs):
            return Errors(math.inf, math.inf, math.inf, name)
        t_rel = t_abs / max(e.abs().max().item(), 1e-30)
        rel_l2 = max(rel_l2, d.norm().item() / max(e.norm().item(), 1e-30))
        max_abs = max(max_abs, t_abs)
        if t_rel > max_rel:
            max_rel, worst = t_rel, name
    return Errors(max_abs, max_rel, rel_l2, worst, tuple(overflow))


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
    if multiple <= 1 and not errors.overflow:
        return Verdict("pass", None, multiple)
    detail = (
        f"max rel err {errors.max_rel:.2e} (tolerance {max_rel_tol:.1e}), rel L2 err {errors.rel_l2:.2e} "
        f"(tolerance {l2_tol:.1e})"
    )
    if dtype == "float32" and multiple > 1:
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
    notes = [overflow_note(name, peak, dt) for name, peak, dt in errors.overflow]
    if multiple > 1:
        notes.append(f"{errors.worst} is {multiple:.1f}× past the {dtype} tolerance: {detail}; correct in float32")
    elif errors.overflow:
        notes.append("everything else within the tolerance; correct in float32")
    return Verdict("imprecise", "; ".join(notes), multiple if multiple > 1 else None)


def overflow_note(name: str, peak: float, dtype: str) -> str:
    """Why a value the dtype cannot hold is flagged, not failed, and what a user does about it."""
    largest = torch.finfo(getattr(torch, dtype)).max
    return (
        f"{name} overflows {dtype}: its float64 reference reaches {peak:.3g}, past {dtype}'s largest {largest:.6g}, "
        "so the infinity is the correctly rounded value (a scalar parameter's gradient sums every element: "
        "keep it in float32 with mixed precision, or scale the loss down)"
    )
