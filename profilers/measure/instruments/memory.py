"""Peak-memory increment of one call, bytes saved for backward, and fit checks.

CUDA: the caching allocator's peak above the allocation in place before the
call. CPU: the peak of live bytes from torch.profiler's memory events during one
call (allocator level; the resident set would hide memory that was reused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ...analysis.footprint import cap_available
from ...sensors import Reading


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of returning it to the OS (True when glibc took the settings).

    By default every tensor over the mmap threshold is a fresh mmap whose pages
    fault in on first touch, so a CPU timing would mostly measure page faults
    (4096×4096 fp32 LayerNorm: ~35 ms with faults, ~10 ms without on a 2-core
    VM). Disabling mmap and trimming makes the allocator reuse memory across
    calls, as a caching allocator does on GPU.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        return False


def return_freed_memory() -> bool:
    """Hand what glibc keeps for reuse back to the OS (``malloc_trim``; True when it ran). The reuse mode keeps
    freed memory in the heap, so the host's available memory would not count what this process let go: a lab
    whose groups each build a whole model calls this between them, before the next group's memory check."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def set_cpu_allocator(mode: str) -> dict[str, Any]:
    """Apply the run's CPU allocator mode (``spec.CPU_ALLOCATORS``) to this process; returns what holds, for
    the run's provenance. A preloaded allocator (LD_PRELOAD jemalloc/tcmalloc) is detected and recorded:
    it ignores glibc's settings and reuses memory itself."""
    from ...spec import CPU_ALLOCATORS
    from ..machine.provenance import preloaded_allocator

    pre = preloaded_allocator()
    out: dict[str, Any] = {"mode": mode, "preloaded": pre}
    if pre:
        out["effect"] = f"{pre} is preloaded: it serves allocations, whatever the mode"
    elif mode == "reuse":
        ok = keep_freed_memory()
        out["effect"] = (
            "glibc malloc, mmap off, trim threshold 1 GiB: freed memory reused, page faults excluded"
            if ok
            else "glibc mallopt unavailable: the system allocator's defaults apply (times may include page faults)"
        )
        if not ok:
            out["mode"] = "system"
    else:
        out["effect"] = CPU_ALLOCATORS["system"]
    return out


def _cpu_allocator_peak(fn: Callable[[], Any]) -> Reading:
    """Peak of live bytes allocated by torch's CPU allocator during one call.

    Allocations are attributed to the op that made them (its *self* memory) and
    frees appear as "[memory]" events; their running sum over time peaks at the
    answer. The resident set would hide memory the allocator reused.
    """
    from .kernels import quiet_profile

    try:
        with quiet_profile(profile_memory=True) as prof:
            out = fn()
        del out
        changes = []
        for e in prof.events():
            if e.name == "[memory]":
                changes.append((e.time_range.start, e.cpu_memory_usage))
            elif e.self_cpu_memory_usage:
                changes.append((e.time_range.start, e.self_cpu_memory_usage))
    except RuntimeError as e:
        return Reading(None, f"torch.profiler memory events unavailable: {e}")
    live = peak = 0
    for _, delta in sorted(changes):
        live += delta
        peak = max(peak, live)
    return Reading(peak)


def peak_increment(fn: Callable[[], Any], device: torch.device) -> Reading:
    """Peak bytes above the baseline during one call of ``fn``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        del out
        return Reading(max(0, peak - base))
    return _cpu_allocator_peak(fn)


@contextlib.contextmanager
def count_saved_bytes() -> Iterator[dict[str, int]]:
    """Sum the distinct storages autograd saves for backward inside the block."""
    seen: set[tuple[int, int]] = set()
    total = {"bytes": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                total["bytes"] += t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            total["bytes"] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def available_bytes(device: torch.device) -> tuple[int, str]:
    """Free memory on the device and what the figure is (capped by NORMSCOPE_MEMORY_LIMIT_GIB when set)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # torch's caching allocator keeps what earlier points freed: the driver counts it as used, but the next
        # point gets it back. Without this a point that fits was refused after a larger one (H200: a Llama-3-8B
        # block fwd+bwd saw 49.4 GiB free of 141 GB while torch held the rest unused)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return cap_available(int(free + max(0, cached)), f"free on {device} (torch's cache included)")
    import psutil

    return cap_available(int(psutil.virtual_memory().available), "available host memory")
