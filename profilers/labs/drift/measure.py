"""The drift monitor's measuring side: statistics of every norm layer's input, recorded window by window.

Library use::

    from profilers.labs.drift import measure
    windows = measure.record_windows(model, batches, window_batches=4)   # [{layer: LayerSample}, ...]

``analysis.py`` beside it turns the recorded statistics into a profile, shift scores and calibrated
thresholds; which layers count as norms, and how a user's model is loaded, is ``measure/models/hooks.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ...measure.models import hooks
from ...runs import checkpoint
from ...spec import SpecError
from .analysis import LayerSample, Window


def sample_of(name: str, kind: str, rows: torch.Tensor) -> LayerSample:
    """Per-row statistics and per-channel sums of one batch of a layer's input (float64 on the host)."""
    r = rows.double()
    mean = r.mean(-1)
    var = r.var(-1, unbiased=False) if r.shape[-1] > 1 else torch.zeros_like(mean)
    return LayerSample(
        name=name,
        kind=kind,
        channels=int(r.shape[-1]),
        row={
            "mean": mean.cpu().numpy(),
            "rms": r.pow(2).mean(-1).sqrt().cpu().numpy(),
            "maxabs": r.abs().amax(-1).cpu().numpy(),
            "var": var.cpu().numpy(),
        },
        ch_sum=r.sum(0).cpu().numpy(),
        ch_sumsq=r.pow(2).sum(0).cpu().numpy(),
        ch_maxabs=r.abs().amax(0).cpu().numpy(),
    )


@contextmanager
def hooked(model: nn.Module) -> Iterator[dict[str, list[LayerSample]]]:
    """Inside the block, each call of a norm layer appends a LayerSample of its input."""
    seen: dict[str, list[LayerSample]] = {}

    def sample(name: str, kind: str, rows: torch.Tensor) -> None:
        seen.setdefault(name, []).append(sample_of(name, kind, rows))

    with hooks.on_norm_inputs(model, sample):
        yield seen


@torch.no_grad()
def record_windows(
    model: nn.Module, batches: Iterable[Any], window_batches: int, limit: int | None = None
) -> list[dict[str, LayerSample]]:
    """Statistics of every norm layer's input, grouped into windows of ``window_batches`` batches (a partial
    last window is dropped); at most ``limit`` windows."""
    model.eval()
    out: list[dict[str, LayerSample]] = []
    it = iter(batches)
    while limit is None or len(out) < limit:
        checkpoint()  # inside a run (the demo), a cancel stops it between windows
        chunk = hooks.take(it, window_batches)
        if len(chunk) < window_batches:
            break
        with hooked(model) as seen:
            for batch in chunk:
                hooks.feed(model, batch)
        if not seen:
            raise SpecError("the model has no normalization layer NormScope can hook (LayerNorm, RMSNorm, …)")
        out.append({name: LayerSample.merge(parts) for name, parts in seen.items()})
    return out


def merge_windows(windows: list[dict[str, LayerSample]]) -> Window:
    """Several windows as one sample per layer (the reference data of a profile)."""
    if not windows:
        raise SpecError("no reference data: the data iterator ended before one full window")
    return {name: LayerSample.merge([w[name] for w in windows]) for name in windows[0]}
