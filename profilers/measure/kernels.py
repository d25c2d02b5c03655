"""torch.profiler, the one module that drives it.

kineto writes start/stop lines straight to file descriptor 2; ``quiet_profile``
silences that descriptor for the profiled region only, so the CLI's progress on
stderr stays readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from torch.profiler import ProfilerActivity, profile


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_profile(cuda: bool = False, **kwargs: Any) -> Iterator[profile]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _quiet_fd2():
        prof = profile(activities=activities, **kwargs)
        prof.__enter__()
    try:
        yield prof
    finally:
        with _quiet_fd2():
            prof.__exit__(None, None, None)


def _has_aten_ancestor(e: Any) -> bool:
    p = e.cpu_parent
    while p is not None:
        if p.name.startswith("aten::"):
            return True
        p = p.cpu_parent
    return False


def _device_kernels(events: list[Any]) -> list[tuple[str, float]]:
    from torch.autograd import DeviceType

    out = [(e.name, float(e.time_range.elapsed_us())) for e in events if e.device_type == DeviceType.CUDA]
    if not out:  # older layouts attach kernels to the CPU op that launched them
        out = [(k.name, float(k.duration)) for e in events for k in (getattr(e, "kernels", None) or [])]
    return out


def _cpu_ops(events: list[Any]) -> list[tuple[str, float]]:
    """Outermost aten ops (what the code dispatched), plus compiled-graph calls."""
    out = []
    for e in events:
        if e.name.startswith("aten::") and not _has_aten_ancestor(e):
            out.append((e.name, float(e.cpu_time_total)))
        elif e.name.startswith("## Call CompiledFxGraph"):
            out.append(("inductor compiled graph", float(e.cpu_time_total)))
    return out


def breakdown(
    call: Any, device: Any, p50_us: float | None, n_calls: int = 3, trace_path: str | None = None
) -> dict[str, Any]:
    """What one call launches: per-kernel calls and time per norm call, launch-overhead share.

    On CUDA the units are device kernels; on CPU the outermost aten ops (inductor's
    C++ kernels are not itemized on CPU, so a compiled call counts as one graph).
    The overhead share compares summed kernel time with the un-profiled p50.
    """
    import torch

    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    with quiet_profile(cuda=cuda):  # the profiler's first session pays its own start-up
        call()
        sync()
    with quiet_profile(cuda=cuda) as prof:
        for _ in range(n_calls):
            call()
        sync()
    events = list(prof.events())
    items = _device_kernels(events) if cuda else _cpu_ops(events)
    grouped: dict[str, list[float]] = {}
    for name, us in items:
        grouped.setdefault(name, []).append(us)
    kernels = sorted(
        (
            {"name": name, "calls_per_call": len(v) / n_calls, "us_per_call": sum(v) / n_calls}
            for name, v in grouped.items()
        ),
        key=lambda k: -k["us_per_call"],
    )
    kernel_us = sum(k["us_per_call"] for k in kernels)
    result: dict[str, Any] = {
        "unit": "cuda kernels" if cuda else "aten ops",
        "traced_calls": n_calls,
        "kernels_per_call": len(items) / n_calls,
        "kernel_us_per_call": kernel_us,
        "launch_overhead_pct": None,
        "kernels": kernels[:25],
    }
    if p50_us and kernel_us <= p50_us:
        result["launch_overhead_pct"] = 100.0 * (p50_us - kernel_us) / p50_us
    elif p50_us:
        result["launch_overhead_note"] = "kernel time exceeds the un-profiled p50 (profiler overhead or overlap)"
    if trace_path:
        prof.export_chrome_trace(trace_path)
        result["trace_path"] = trace_path
    return result
