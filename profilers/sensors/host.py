"""Host sensors: psutil for CPU, memory and temperatures; RAPL for package energy.

psutil has no power API. RAPL's package counters (``/sys/class/powercap/
intel-rapl:N/energy_uj``, AMD too) are root-only since CVE-2020-8694 and absent
in most VMs; each is read only at package level so domains never overlap, and
wrap-around is undone with ``max_energy_range_uj``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Reading, missing

POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplDomain:
    path: Path
    name: str
    max_range_uj: int


def wrap_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase between two reads, across at most one wrap-around."""
    if after >= before:
        return after - before
    return after + max_range - before


class Rapl:
    """CPU package energy counters, or the reason they cannot be read."""

    def __init__(self, root: Path = POWERCAP) -> None:
        self.root = root
        self.domains: list[RaplDomain] = []
        self.reason: str | None = None
        if not root.is_dir():
            self.reason = f"no {root}: this kernel or VM exposes no RAPL counters"
            return
        candidates = sorted(p for p in root.iterdir() if re.fullmatch(r"intel-rapl:\d+", p.name))
        if not candidates:
            self.reason = f"no RAPL package domains under {root} (not exposed on this machine)"
            return
        for p in candidates:
            try:
                name = (p / "name").read_text().strip()
                max_range = int((p / "max_energy_range_uj").read_text())
                int((p / "energy_uj").read_text())
            except PermissionError:
                self.reason = f"RAPL counters under {root} are not readable: they need root since CVE-2020-8694"
                self.domains = []
                return
            except (OSError, ValueError) as e:
                self.reason = f"RAPL domain {p.name} unreadable: {e}"
                self.domains = []
                return
            if name.startswith("package"):
                self.domains.append(RaplDomain(p, name, max_range))
        if not self.domains:
            self.reason = "RAPL is present but has no package domain"

    @property
    def available(self) -> bool:
        return self.reason is None

    def read_uj(self) -> list[int]:
        return [int((d.path / "energy_uj").read_text()) for d in self.domains]

    def delta_j(self, before: list[int], after: list[int]) -> float:
        return sum(wrap_delta(b, a, d.max_range_uj) for b, a, d in zip(before, after, self.domains)) / 1e6


class Host:
    """psutil readings; ``psutil_mod`` is a seam for tests."""

    def __init__(self, psutil_mod: Any = None, rapl: Rapl | None = None) -> None:
        if psutil_mod is None:
            import psutil as psutil_mod
        self.ps = psutil_mod
        self.proc = self.ps.Process(os.getpid())
        self.rapl = rapl if rapl is not None else Rapl()
        # the first non-blocking cpu_percent call returns a meaningless 0.0: spend it here
        self.ps.cpu_percent(interval=None, percpu=True)

    def cpu_util_pct_per_core(self) -> Reading[list[float]]:
        return Reading(list(self.ps.cpu_percent(interval=None, percpu=True)))

    def cpu_util_pct(self) -> Reading[float]:
        per = self.cpu_util_pct_per_core().value or []
        return Reading(sum(per) / len(per)) if per else missing("psutil returned no per-core utilization")

    def cpu_freq_mhz(self) -> Reading[float]:
        try:
            f = self.ps.cpu_freq()
        except (AttributeError, NotImplementedError, OSError):
            f = None
        if f is None or not f.current:
            return missing("CPU frequency not exposed (common in VMs)")
        return Reading(float(f.current))

    def process_rss_bytes(self) -> Reading[int]:
        return Reading(int(self.proc.memory_info().rss))

    def memory_used_bytes(self) -> Reading[int]:
        vm = self.ps.virtual_memory()
        return Reading(int(vm.total - vm.available))

    def memory_total_bytes(self) -> Reading[int]:
        return Reading(int(self.ps.virtual_memory().total))

    def temperatures_c(self) -> Reading[dict[str, float]]:
        fn = getattr(self.ps, "sensors_temperatures", None)
        if fn is None:
            return missing("psutil has no temperature API on this platform")
        try:
            temps = fn()
        except (OSError, RuntimeError) as e:
            return missing(f"temperatures unreadable: {e}")
        out = {
            f"{chip}/{t.label or i}": float(t.current)
            for chip, entries in (temps or {}).items()
            for i, t in enumerate(entries)
        }
        return Reading(out) if out else missing("no temperature sensors exposed (common in VMs)")

    def cpu_package_power_source(self) -> Reading[str]:
        return Reading("rapl") if self.rapl.available else missing(self.rapl.reason or "RAPL unavailable")
