"""Sensors: readings with units in their names, or None with the reason.

``nvml`` is the only module that touches pynvml; ``host`` reads psutil and RAPL;
``sampler`` polls both in a background thread while a point runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A sensor value, or None and why it is missing. Never 0 for "unknown"."""

    value: T | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def missing(reason: str) -> Reading:
    return Reading(None, reason)


def energy_capability(device_type: str) -> Reading[str]:
    """Whether this machine can measure energy on ``device_type``: the meter's name, or None and why not.

    The same conditions the run's meter choice applies (NVML's energy counter or sampled instant power on
    GPUs, RAPL package counters on CPUs), checked without starting a run, so a form can disable what
    cannot work and say why.
    """
    if device_type == "cpu":
        from .host import Rapl

        rapl = Rapl()
        return Reading("RAPL package counters") if rapl.available else missing(f"CPU energy: {rapl.reason}")
    from .nvml import Nvml

    nv = Nvml()
    try:
        if not nv.available:
            return missing(f"GPU energy: NVML unavailable ({nv.reason})")
        gpus = nv.gpus()
        if not gpus:
            return missing("GPU energy: NVML sees no GPU")
        if gpus[0].energy_mj().ok:
            return Reading("NVML energy counter")
        if gpus[0].power_instant_w().ok:
            return Reading("NVML instant power, integrated")
        return missing(f"GPU energy: {gpus[0].energy_mj().reason}")
    finally:
        nv.close()
