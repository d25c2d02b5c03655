"""The roofline's ceiling: a ladder of copies measured on the run's device, with the run's timer.

A copy of S bytes reads S/2 and writes S/2; its bandwidth depends on where that
working set lives: on the 2-core VM 2 MB copied at ≈ 90 GB/s, 8-32 MB at ≈ 51,
256 MB at ≈ 20. A single large probe made cache-resident norm points read
158-216% "of copy". So each run measures copies at about eight working-set
sizes, from below L2 to at least four times the last-level cache (CPU) or the
L2 (GPU), with the same timer and thread count as its points (so a GPU warm
point meets a warm ladder, a cold one a flushed ladder), and each point is
judged against the ladder at its own working-set size, labelled with the cache
level that size fits in.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...analysis.roofline import Ladder, cache_level
from ..instruments.timing import Timer

SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


def cpu_cache_sizes(root: Path = SYS_CACHE) -> dict[str, int]:
    """Data/unified cache sizes of CPU 0 by level ('L1', 'L2', 'L3'), from sysfs; {} when unreadable."""
    sizes: dict[str, int] = {}
    try:
        entries = sorted(root.glob("index*"))
    except OSError:
        return sizes
    for d in entries:
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            level = int((d / "level").read_text().strip())
            text = (d / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes[f"L{level}"] = int(digits) * mult
    return sizes


def gpu_cache_sizes(device: torch.device) -> dict[str, int]:
    props = torch.cuda.get_device_properties(device)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    return {"L2": l2} if l2 else {}


def ladder_sizes(caches: dict[str, int], available_bytes: int, device_type: str) -> list[int]:
    """About eight working-set sizes (bytes read + written), log-spaced from below L2 to ≥ 4× the last cache.

    The top is capped by a tenth of the memory available (two buffers of half the size each are allocated).
    """
    last = max(caches.values()) if caches else (64 << 20)
    low = min(caches.get("L2", 1 << 20) // 4, 1 << 20) if device_type == "cpu" else 1 << 20
    # GPUs: also reach 1 GiB, the size of a large point (a 240 MB top rung read 9% under a 1 GiB copy on an H200)
    top = 4 * last if device_type == "cpu" else max(4 * last, 1 << 30)
    high = min(top, max(low * 8, available_bytes // 10))
    high = max(high, low * 2)
    n = 8
    return sorted({int(low * (high / low) ** (i / (n - 1))) // 64 * 64 for i in range(n)})


def measure_ladder(
    device: torch.device, timer: Timer, caches: dict[str, int], available_bytes: int, budget_ms: float = 150.0
) -> Ladder:
    """Copy bandwidth at each rung, p50 of the run's own timer (warmup 20 ms, ``budget_ms`` per rung)."""
    rungs = []
    for ws in ladder_sizes(caches, available_bytes, device.type):
        n = max(16, ws // 8)  # two float32 buffers of n elements: ws = 2·4·n bytes moved per copy
        src = torch.ones(n, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        m = timer.measure(lambda src=src, dst=dst: dst.copy_(src), warmup_ms=20.0, budget_ms=budget_ms)
        p50 = m.stats.p50_us
        rungs.append((8 * n, 8 * n / (p50 * 1e-6) / 1e9))
        del src, dst
    state = getattr(timer, "cache_state", "warm")
    return Ladder(rungs, caches, device.type, state)


def copy_bandwidth_gbps(device: torch.device, nbytes: int | None = None, repeats: int = 10) -> float:
    """Best bandwidth of one large same-device copy over ``repeats``, counting bytes read + written.

    Kept for the GPU benchmark scripts (a DRAM figure comparable with vendor copy numbers); runs use the
    ladder above.
    """
    if nbytes is None:
        nbytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    n = nbytes // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault in pages / warm up
    times = []
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        for _ in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(stream)
            dst.copy_(src)
            e.record(stream)
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


__all__ = ["Ladder", "cache_level", "copy_bandwidth_gbps", "cpu_cache_sizes", "gpu_cache_sizes", "measure_ladder"]


def memory_state_probe(device: torch.device, timer: Timer, nbytes: int, budget_ms: float = 25.0) -> float:
    """The device-memory copy bandwidth now (GB/s, bytes read + written), at the ladder's top working set:
    taken before and after each group, it names the memory state the group was timed in (on the 2-core VM the
    same copy ran at 49-52 GB/s in one state and 72-93 GB/s in another, and bandwidth-bound ratios moved ~70%
    between them while a compute-bound baseline did not)."""
    n = max(16, nbytes // 8)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    m = timer.measure(lambda src=src, dst=dst: dst.copy_(src), warmup_ms=5.0, budget_ms=budget_ms)
    del src, dst
    return 8 * n / (m.stats.p50_us * 1e-6) / 1e9
