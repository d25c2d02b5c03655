"""The copy-bandwidth probe: the ceiling the roofline divides by, measured on the run's device."""

from __future__ import annotations

import time

import torch


def copy_bandwidth_gbps(device: torch.device, nbytes: int | None = None, repeats: int = 10) -> float:
    """Best bandwidth of a large same-device copy over ``repeats``, counting bytes read + written.

    The best, not the median: this is the ceiling the roofline divides by, and on
    a shared machine a slow repeat says more about neighbours than about memory.
    """
    if nbytes is None:
        nbytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    n = nbytes // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault in pages / warm up
    times = []
    if device.type == "cuda":
        for _ in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            dst.copy_(src)
            e.record()
            torch.cuda.synchronize(device)
            times.append(s.elapsed_time(e) / 1e3)
    else:
        for _ in range(repeats):
            t = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - t)
    best = min(times)
    del src, dst
    return 2 * n * 4 / best / 1e9
