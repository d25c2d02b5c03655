"""Shared by the GPU benchmark scripts: refuse cleanly without CUDA, and build a timed forward call."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profilers.catalog import Config, unsupported_reason
from profilers.measure.instruments import compile as compiling
from profilers.measure.subjects.variants import VARIANTS, build


def require_cuda(script: str) -> torch.device:
    if not torch.cuda.is_available():
        sys.exit(f"{Path(script).name} needs a CUDA GPU: torch {torch.__version__} sees none")
    return torch.device("cuda:0")


def forward_call(
    variant: str, impl: str, tokens: int, hidden: int, dev: torch.device, dtype: torch.dtype = torch.bfloat16
) -> tuple[Callable[[], Any] | None, float | None, str | None]:
    """(the forward call under no_grad, compile seconds, None) or (None, None, why it is not supported)."""
    cfg = Config()
    reason = unsupported_reason(variant, impl, "cuda", tokens, hidden, cfg)
    if reason:
        return None, None, reason
    ins = VARIANTS[variant].make_inputs(tokens, hidden, dtype, dev, 0, cfg)
    fn = build(variant, impl, cfg, compiler=compiling.compile_fresh)
    compile_s = None
    with torch.no_grad():
        if impl == "compiled":
            with compiling.first_calls() as t:
                fn(*ins)
                torch.cuda.synchronize(dev)
            compile_s = t["compile_s"]

    def call(fn=fn, ins=ins):
        with torch.no_grad():
            return fn(*ins)

    return call, compile_s, None


def fwdbwd_call(
    variant: str, impl: str, tokens: int, hidden: int, dev: torch.device, dtype: torch.dtype = torch.bfloat16
) -> tuple[Callable[[], Any] | None, str | None]:
    """(a forward+backward call, as NormScope times one: gradients of every input, None) or (None, why not)."""
    cfg = Config()
    reason = unsupported_reason(variant, impl, "cuda", tokens, hidden, cfg)
    if reason:
        return None, reason
    ins = VARIANTS[variant].make_inputs(tokens, hidden, dtype, dev, 0, cfg)
    for t in ins:
        t.requires_grad_(True)
    fn = build(variant, impl, cfg, compiler=compiling.compile_fresh)

    def first() -> list[torch.Tensor]:
        outs = fn(*ins)
        dys = [torch.randn_like(o) for o in outs]
        torch.autograd.grad(outs, ins, dys)
        torch.cuda.synchronize(dev)
        return dys

    if impl == "compiled":
        with compiling.first_calls():  # the first call compiles: checked, not a silent eager fallback
            dys = first()
    else:
        dys = first()

    def call(fn=fn, ins=ins, dys=dys):
        return torch.autograd.grad(fn(*ins), ins, dys)

    return call, None
