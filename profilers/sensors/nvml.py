"""NVML, the only module that imports pynvml (package nvidia-ml-py).

Every getter returns a Reading whose unit is in its name; NVML errors become None
with a reason, never 0. Each reading names its ``nvidia-smi --query-gpu=`` field
so it can be cross-checked by hand.

Power has two meanings on Ampere and newer: ``nvmlDeviceGetPowerUsage`` is a
one-second average (``power_avg_1s_w``), while field NVML_FI_DEV_POWER_INSTANT
is the instantaneous draw (``power_instant_w``) used for time series. Energy
comes from the total-energy counter (mJ since driver load, Volta and newer,
updated about every 100 ms).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import Reading, missing

FIELD_POWER_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT
# nvmlClocksEventReason* bits that mean the clocks were pulled down under load (idle and the
# application-clock setting are not slowdowns)
SLOWDOWN_REASONS = {
    0x4: "power cap",
    0x8: "hardware slowdown",
    0x20: "thermal (software)",
    0x40: "thermal (hardware)",
    0x80: "power brake",
}

# reading name -> nvidia-smi --query-gpu field for cross-checking
NVIDIA_SMI_FIELDS = {
    "name": "name",
    "uuid": "uuid",
    "driver_version": "driver_version",
    "power_limit_w": "power.limit",
    "power_avg_1s_w": "power.draw.average",
    "power_instant_w": "power.draw.instant",
    "memory_total_bytes": "memory.total",
    "memory_used_bytes": "memory.used",
    "sm_clock_mhz": "clocks.sm",
    "mem_clock_mhz": "clocks.mem",
    "clock_event_reasons": "clocks_event_reasons.active",
    "utilization_pct": "utilization.gpu",
    "temperature_c": "temperature.gpu",
    "energy_mj": "(no field: nvmlDeviceGetTotalEnergyConsumption)",
}


def _load() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _reason(lib: Any, err: Exception) -> str:
    code = getattr(err, "value", None)
    codes = {
        getattr(lib, "NVML_ERROR_NOT_SUPPORTED", -1): "not supported on this GPU",
        getattr(lib, "NVML_ERROR_NO_PERMISSION", -1): "no permission to read it (try as root)",
        getattr(lib, "NVML_ERROR_LIBRARY_NOT_FOUND", -1): "no NVIDIA driver (libnvidia-ml not found)",
        getattr(lib, "NVML_ERROR_DRIVER_NOT_LOADED", -1): "no NVIDIA driver loaded",
        getattr(lib, "NVML_ERROR_GPU_IS_LOST", -1): "the GPU fell off the bus",
        getattr(lib, "NVML_ERROR_UNINITIALIZED", -1): "NVML is not initialized",
    }
    return codes.get(code, f"NVML error: {err}")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def normalize_uuid(uuid: str) -> str:
    """NVML says 'GPU-xxxx…', torch says 'xxxx…' (or 'GPU-xxxx…'): compare the bare form."""
    u = uuid.strip().lower()
    return u[4:] if u.startswith("gpu-") else u


@dataclass
class Gpu:
    """One NVML device; ``index`` is NVML's (PCI bus order), not torch's."""

    lib: Any
    handle: Any
    index: int

    def _get(self, fn: Callable[..., Any], *args: Any) -> Reading:
        try:
            return Reading(fn(self.handle, *args))
        except self.lib.NVMLError as e:
            return missing(_reason(self.lib, e))

    def name(self) -> Reading[str]:
        r = self._get(self.lib.nvmlDeviceGetName)
        return Reading(_text(r.value)) if r.ok else r

    def uuid(self) -> Reading[str]:
        r = self._get(self.lib.nvmlDeviceGetUUID)
        return Reading(_text(r.value)) if r.ok else r

    def power_limit_w(self) -> Reading[float]:
        r = self._get(self.lib.nvmlDeviceGetEnforcedPowerLimit)
        return Reading(r.value / 1000.0) if r.ok else r

    def power_avg_1s_w(self) -> Reading[float]:
        """nvmlDeviceGetPowerUsage: a one-second average on Ampere and newer."""
        r = self._get(self.lib.nvmlDeviceGetPowerUsage)
        return Reading(r.value / 1000.0) if r.ok else r

    def power_instant_w(self) -> Reading[float]:
        return self._field_w(FIELD_POWER_INSTANT)

    def _field_w(self, field_id: int) -> Reading[float]:
        r = self._get(self.lib.nvmlDeviceGetFieldValues, [field_id])
        if not r.ok:
            return r
        fv = r.value[0]
        if getattr(fv, "nvmlReturn", 0) != 0:
            return missing(f"field {field_id} not supported on this GPU")
        # field values carry a union; power fields are unsigned ints in mW
        raw = getattr(fv.value, "uiVal", None)
        if raw is None:
            return missing(f"field {field_id} returned no value")
        return Reading(raw / 1000.0)

    def energy_mj(self) -> Reading[int]:
        """Total energy since driver load in millijoules (Volta and newer)."""
        return self._get(self.lib.nvmlDeviceGetTotalEnergyConsumption)

    def memory_total_bytes(self) -> Reading[int]:
        r = self._get(self.lib.nvmlDeviceGetMemoryInfo)
        return Reading(int(r.value.total)) if r.ok else r

    def memory_used_bytes(self) -> Reading[int]:
        r = self._get(self.lib.nvmlDeviceGetMemoryInfo)
        return Reading(int(r.value.used)) if r.ok else r

    def sm_clock_mhz(self) -> Reading[int]:
        return self._get(self.lib.nvmlDeviceGetClockInfo, self.lib.NVML_CLOCK_SM)

    def mem_clock_mhz(self) -> Reading[int]:
        return self._get(self.lib.nvmlDeviceGetClockInfo, self.lib.NVML_CLOCK_MEM)

    def clock_event_reasons(self) -> Reading[int]:
        """The bitmask of why clocks are where they are (nvmlDeviceGetCurrentClocksEventReasons)."""
        fn = getattr(self.lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            self.lib, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        if fn is None:
            return missing("this nvidia-ml-py has no clock event reasons call")
        return self._get(fn)

    def clock_slowdown(self) -> Reading[str]:
        """Active slowdowns by name ('' when none): power cap, thermal, power brake, hardware slowdown."""
        r = self.clock_event_reasons()
        if not r.ok:
            return r
        return Reading(", ".join(name for bit, name in SLOWDOWN_REASONS.items() if int(r.value) & bit))

    def utilization_pct(self) -> Reading[int]:
        r = self._get(self.lib.nvmlDeviceGetUtilizationRates)
        return Reading(int(r.value.gpu)) if r.ok else r

    def temperature_c(self) -> Reading[int]:
        return self._get(self.lib.nvmlDeviceGetTemperature, self.lib.NVML_TEMPERATURE_GPU)

    def info(self) -> dict[str, Any]:
        """Static facts for provenance, each value or None plus a reason."""
        out: dict[str, Any] = {"nvml_index": self.index}
        for key in ("name", "uuid", "power_limit_w", "memory_total_bytes"):
            r = getattr(self, key)()
            out[key] = r.value
            if not r.ok:
                out[f"{key}_reason"] = r.reason
        return out


class Nvml:
    """NVML or its absence. ``lib`` is a seam: tests pass an autospec'd fake module."""

    _lock = threading.Lock()

    def __init__(self, lib: Any = None) -> None:
        self.lib = lib if lib is not None else _load()
        self.reason: str | None = None
        self._gpus: list[Gpu] = []
        if self.lib is None:
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return
        try:
            with self._lock:
                self.lib.nvmlInit()
            count = self.lib.nvmlDeviceGetCount()
            self._gpus = [Gpu(self.lib, self.lib.nvmlDeviceGetHandleByIndex(i), i) for i in range(count)]
        except self.lib.NVMLError as e:
            self.reason = _reason(self.lib, e)
            self._gpus = []

    @property
    def available(self) -> bool:
        return self.reason is None

    def gpus(self) -> list[Gpu]:
        return list(self._gpus)

    def driver_version(self) -> Reading[str]:
        if self.reason:
            return missing(self.reason)
        try:
            return Reading(_text(self.lib.nvmlSystemGetDriverVersion()))
        except self.lib.NVMLError as e:
            return missing(_reason(self.lib, e))

    def cuda_driver_version(self) -> Reading[str]:
        if self.reason:
            return missing(self.reason)
        try:
            v = int(self.lib.nvmlSystemGetCudaDriverVersion())
            return Reading(f"{v // 1000}.{(v % 1000) // 10}")
        except self.lib.NVMLError as e:
            return missing(_reason(self.lib, e))

    def by_uuid(self, uuid: str) -> Gpu | None:
        """The NVML device with this UUID: torch and NVML may number GPUs differently."""
        want = normalize_uuid(uuid)
        for g in self._gpus:
            u = g.uuid()
            if u.ok and normalize_uuid(u.value) == want:
                return g
        return None

    def close(self) -> None:
        if self.reason is None:
            try:
                self.lib.nvmlShutdown()
            except self.lib.NVMLError:
                pass


def torch_uuid(device_index: int) -> str | None:
    """The UUID torch reports for a CUDA device, or None if it reports none."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    u = getattr(props, "uuid", None)
    return str(u) if u is not None else None


def gpu_for_torch_device(nvml: Nvml, device_index: int) -> Gpu | None:
    u = torch_uuid(device_index)
    return nvml.by_uuid(u) if u else None
