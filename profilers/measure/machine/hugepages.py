"""CPU tensor memory on huge pages: far less of the per-process draw of pages that moves CPU times.

With 4 KiB pages a large CPU tensor is scattered over whatever physical pages
the kernel hands a process; on a virtual machine those pages also sit on the
host's pages in their own way. A process keeps its pages for its life, so a
CPU time (and a ratio of two) settles in a per-process mode: RMSNorm ÷ LayerNorm
native fp32 at 4096×4096 on the 2-core VM ranged 2.11-2.45 (spread 16%) over six
fresh processes, and at 2048×1024 2.47-3.33 (35%), while each process's own 95%
interval was ±1-2% (``benchmarks/cpu_process_spread.py``). With torch's tensors
on 2 MiB transparent huge pages the same six processes ranged 2.15-2.27 (6%) and
2.91-3.10 (6%).

torch does this when ``THP_MEM_ALLOC_ENABLE=1`` is in the environment at its
first CPU allocation (allocations of 2 MiB and more are page-aligned and advised
``MADV_HUGEPAGE``; the kernel then backs their 2 MiB-aligned interior with huge
pages), so the setting is made by the CLI before torch is imported, and
:func:`state` checks afterwards what actually holds, on a probe tensor's mapping
in ``/proc/self/smaps``: a process that loaded torch first, or a kernel with
transparent huge pages off, records base pages with the reason.

Nothing here imports torch at module level: the CLI calls :func:`request` first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV = "THP_MEM_ALLOC_ENABLE"
HUGE = 2 << 20
THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def request(mode: str) -> None:
    """Set the environment for ``mode`` (huge | base); effective only if torch has not allocated yet."""
    if mode == "huge":
        os.environ[ENV] = "1"
    else:
        os.environ.pop(ENV, None)


def kernel_thp(path: Path = THP_SYSFS) -> str | None:
    """The kernel's transparent huge page setting (always | madvise | never), None where unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def _vma(addr: int, smaps: str) -> dict[str, str]:
    """The fields of the mapping in ``smaps`` (the text of /proc/PID/smaps) that holds ``addr``."""
    found: dict[str, str] | None = None
    for line in smaps.splitlines():
        head = line.split(maxsplit=1)[0] if line.strip() else ""
        lo_hi = head.split("-")
        if len(lo_hi) == 2 and all(c in "0123456789abcdef" for c in lo_hi[0] + lo_hi[1]):
            if found is not None:
                break
            if int(lo_hi[0], 16) <= addr < int(lo_hi[1], 16):
                found = {"range": head}
        elif found is not None:
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip()
    return found or {}


def probe_tensor(nbytes: int = 4 * HUGE, smaps: Path = Path("/proc/self/smaps")) -> dict[str, Any]:
    """Allocate and touch one tensor the way a point does; say whether its memory was advised for huge pages
    (the mapping's ``hg`` flag) and how much of its mapping the kernel put on huge pages."""
    import torch

    t = torch.empty(nbytes, dtype=torch.uint8)
    t.fill_(1)
    try:
        vma = _vma(t.data_ptr(), smaps.read_text())
    except OSError as e:
        return {"advised": None, "reason": f"{smaps} unreadable: {e.strerror}"}
    if not vma:
        return {"advised": None, "reason": f"the probe tensor's mapping is not in {smaps}"}
    flags = vma.get("VmFlags", "").split()
    huge_kib = vma.get("AnonHugePages", "").split()
    return {
        "advised": "hg" in flags,
        "mapping_huge_kib": int(huge_kib[0]) if huge_kib and huge_kib[0].isdigit() else None,
    }


def state(requested: str, thp: str | None = None, probe: dict[str, Any] | None = None) -> dict[str, Any]:
    """What holds for this process: mode (huge | base), what was asked, the kernel setting, a probe tensor's
    mapping, and why the mode differs from the request where it does."""
    thp = kernel_thp() if thp is None else thp
    probe = probe_tensor() if probe is None else probe
    advised = bool(probe.get("advised")) and thp in ("always", "madvise")
    huge = advised and (probe.get("mapping_huge_kib") or 0) > 0
    out: dict[str, Any] = {"mode": "huge" if huge else "base", "requested": requested, "kernel_thp": thp}
    out["probe"] = probe
    if huge:
        out["effect"] = "tensors of 2 MiB and more on 2 MiB transparent huge pages, by torch's THP allocation"
    elif thp == "always":
        out["effect"] = "torch's default placement; the kernel may still back large regions with huge pages (always)"
    else:
        out["effect"] = "torch's default placement on 4 KiB pages"
    if out["mode"] != requested:
        if requested == "base":
            out["reason"] = f"{ENV} was set before torch loaded in this process"
        elif probe.get("advised") is None:
            out["reason"] = probe.get("reason") or "the probe tensor's mapping was not found"
        elif thp in (None, "never"):
            out["reason"] = (
                "the kernel's transparent huge pages are off (never)"
                if thp == "never"
                else "the kernel's transparent huge page setting is unreadable here"
            )
        elif advised:
            out["reason"] = (
                "the probe tensor was advised for huge pages but the kernel backed it with 4 KiB pages "
                "(no free 2 MiB pages: memory fragmented, or huge pages reserved elsewhere)"
            )
        else:
            out["reason"] = (
                f"torch did not advise huge pages: it allocated before {ENV}=1 was set (the variable is read "
                "once, at torch's first allocation), or this torch build lacks the feature; start the sweep "
                "from the CLI or the dashboard"
            )
    return out
