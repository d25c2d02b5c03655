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


MEMOP_PREFIXES = ("Memset", "Memcpy", "memset", "memcpy")


def _device_kernels(events: list[Any]) -> list[tuple[str, float]]:
    from torch.autograd import DeviceType

    out = [(e.name, float(e.time_range.elapsed_us())) for e in events if e.device_type == DeviceType.CUDA]
    if not out:  # older layouts attach kernels to the CPU op that launched them
        out = [(k.name, float(k.duration)) for e in events for k in (getattr(e, "kernels", None) or [])]
    return out


def split_memops(items: list[tuple[str, float]]) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(compute kernels, memsets and memcpys): copies are work too, but not the kernels a call launches."""
    compute = [(n, us) for n, us in items if not n.startswith(MEMOP_PREFIXES)]
    memops = [(n, us) for n, us in items if n.startswith(MEMOP_PREFIXES)]
    return compute, memops


def launch_overhead_pct(kernel_us_per_call: float, loop_us_per_call: float) -> float | None:
    """The share of a warm back-to-back loop's wall time in which no kernel of the call ran.

    ≈ 0 for one long fused kernel or a graph replay (the GPU never waits for the CPU); large for many tiny
    launches. Both figures are warm (unflushed), so cache state does not masquerade as launch overhead.
    """
    if loop_us_per_call <= 0:
        return None
    return max(0.0, 100.0 * (1.0 - kernel_us_per_call / loop_us_per_call))


def _cpu_ops(events: list[Any]) -> list[tuple[str, float]]:
    """Outermost aten ops (what the code dispatched), plus compiled-graph calls."""
    out = []
    for e in events:
        if e.name.startswith("aten::") and not _has_aten_ancestor(e):
            out.append((e.name, float(e.cpu_time_total)))
        elif e.name.startswith("## Call CompiledFxGraph"):
            out.append(("inductor compiled graph", float(e.cpu_time_total)))
    return out


def count_device_kernels(call: Any, device: Any) -> int:
    """Compute kernels one call of ``call`` launches on the GPU (memsets and memcpys not counted)."""
    import torch

    torch.cuda.synchronize(device)
    with quiet_profile(cuda=True) as prof:
        call()
        torch.cuda.synchronize(device)
    compute, _ = split_memops(_device_kernels(list(prof.events())))
    return len(compute)


def _warm_loop_us(call: Any, device: Any, min_ms: float = 5.0) -> float:
    """µs per call of an unflushed back-to-back loop, timed with events on the device's stream."""
    import torch

    stream = torch.cuda.current_stream(device)
    for _ in range(3):
        call()
    torch.cuda.synchronize(device)
    n = 1
    while True:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(stream)
        for _ in range(n):
            call()
        e.record(stream)
        torch.cuda.synchronize(device)
        ms = s.elapsed_time(e)
        if ms >= min_ms or n >= 4096:
            return 1e3 * ms / n
        n *= 4


def breakdown(
    call: Any, device: Any, p50_us: float | None = None, n_calls: int = 3, trace_path: str | None = None
) -> dict[str, Any]:
    """What one call launches: per-kernel calls and time per norm call, memops apart, launch-overhead share.

    On CUDA the units are device compute kernels (memsets/memcpys counted separately) and the launch
    overhead compares their summed time with a warm back-to-back loop of the same call. On CPU the units
    are the outermost aten ops (inductor's C++ kernels are not itemized, so a compiled call counts as one
    graph) and an op's time includes its own dispatch, so no launch overhead is separated.
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
    items, memops = split_memops(_device_kernels(events)) if cuda else (_cpu_ops(events), [])
    kernels = _grouped(items, n_calls)
    kernel_us = sum(k["us_per_call"] for k in kernels)
    result: dict[str, Any] = {
        "unit": "cuda kernels" if cuda else "aten ops",
        "traced_calls": n_calls,
        "kernels_per_call": len(items) / n_calls,
        "kernel_us_per_call": kernel_us,
        "memops_per_call": len(memops) / n_calls if cuda else None,
        "memops": _grouped(memops, n_calls),
        "launch_overhead_pct": None,
        "kernels": kernels[:25],
    }
    if cuda:
        loop_us = _warm_loop_us(call, device)
        result["loop_us_per_call"] = loop_us
        result["launch_overhead_pct"] = launch_overhead_pct(kernel_us, loop_us)
    else:
        result["launch_overhead_note"] = "on CPU an op's time includes its own dispatch: no launch overhead to separate"
    if trace_path:
        prof.export_chrome_trace(trace_path)
        result["trace_path"] = trace_path
    return result


def _grouped(items: list[tuple[str, float]], n_calls: int) -> list[dict[str, Any]]:
    grouped: dict[str, list[float]] = {}
    for name, us in items:
        grouped.setdefault(name, []).append(us)
    return sorted(
        (
            {"name": name, "calls_per_call": len(v) / n_calls, "us_per_call": sum(v) / n_calls}
            for name, v in grouped.items()
        ),
        key=lambda k: -k["us_per_call"],
    )
