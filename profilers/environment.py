"""`python -m profilers env` and `sensors`: what this machine is and what it reads now."""

from __future__ import annotations

import sys
import time
from typing import Any

from . import provenance
from .sensors import Reading
from .sensors.host import Host
from .sensors.nvml import NVIDIA_SMI_FIELDS, Nvml, normalize_uuid


def describe(nvml: Nvml | None = None, host: Host | None = None) -> dict[str, Any]:
    import torch

    from .variants import c_compiler_available, liger_available

    nv = nvml if nvml is not None else Nvml()
    h = host if host is not None else Host()
    info: dict[str, Any] = {
        "machine": provenance.machine("cpu"),
        "versions": provenance.versions(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "torch_compile_cpu": c_compiler_available() or "available",
        "liger": liger_available() or "available",
        "nvml": {"available": nv.available, "reason": nv.reason},
        "rapl": {"available": h.rapl.available, "reason": h.rapl.reason, "domains": [d.name for d in h.rapl.domains]},
        "host": _reading_dict(
            cpu_freq_mhz=h.cpu_freq_mhz(), temperatures_c=h.temperatures_c(), memory_total_bytes=h.memory_total_bytes()
        ),
        "gpus": [],
    }
    if nv.available:
        info["nvml"]["driver_version"] = nv.driver_version().value
        info["nvml"]["cuda_driver"] = nv.cuda_driver_version().value
    torch_uuids: dict[str, int] = {}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            u = getattr(torch.cuda.get_device_properties(i), "uuid", None)
            if u is not None:
                torch_uuids[normalize_uuid(str(u))] = i
    for g in nv.gpus():
        d = g.info()
        d["torch_device"] = None
        if d.get("uuid"):
            idx = torch_uuids.get(normalize_uuid(d["uuid"]))
            d["torch_device"] = f"cuda:{idx}" if idx is not None else None
        e = g.energy_mj()
        d["energy_counter"] = "available" if e.ok else e.reason
        info["gpus"].append(d)
    nv.close()
    return info


def _reading_dict(**readings: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, r in readings.items():
        out[k] = r.value
        if not r.ok:
            out[f"{k}_reason"] = r.reason
    return out


def _na(value: Any, reason: str | None = None, fmt: str = "{}") -> str:
    if value is None:
        return f"N/A ({reason})" if reason else "N/A"
    return fmt.format(value)


def format_text(info: dict[str, Any]) -> str:
    m, v, nv = info["machine"], info["versions"], info["nvml"]
    nvml_line = f"available, driver {nv.get('driver_version')}" if nv["available"] else f"N/A ({nv['reason']})"
    rapl = info["rapl"]
    rapl_line = f"available: {', '.join(rapl['domains'])}" if rapl["available"] else f"N/A ({rapl['reason']})"
    host = info["host"]
    lines = [
        f"host        {m['hostname']} ({m['os']}, {m['arch']})",
        f"cpu         {m['cpu_model']}: {m['cpu_cores_physical']} physical / {m['cpu_cores_logical']} logical cores,"
        f" {_na(host['cpu_freq_mhz'], host.get('cpu_freq_mhz_reason'), '{:.0f} MHz')}",
        f"memory      {m['ram_bytes'] / 2**30:.1f} GiB",
        f"python      {v['python']}   torch {v['torch']} (CUDA {_na(v['torch_cuda'], 'CPU build')})",
        f"triton      {_na(v['triton'], 'not installed')}   liger-kernel {_na(v['liger_kernel'], 'not installed')}",
        f"normscope   commit {_na(v['normscope_commit'], v.get('normscope_commit_reason'))}"
        + (" (dirty)" if v.get("normscope_dirty") else ""),
        f"torch.compile on CPU: {info['torch_compile_cpu']}",
        f"CUDA        {'available' if info['cuda_available'] else 'not available to torch'}",
        f"NVML        {nvml_line}",
        f"RAPL        {rapl_line}",
        f"temps       {_na(host['temperatures_c'], host.get('temperatures_c_reason'))}",
    ]
    for g in info["gpus"]:
        mem = g.get("memory_total_bytes")
        lines.append(
            f"gpu {g['nvml_index']}       {_na(g.get('name'), g.get('name_reason'))}  {_na(g.get('uuid'))}  "
            f"torch {_na(g.get('torch_device'), 'not visible to torch')}  "
            f"power limit {_na(g.get('power_limit_w'), g.get('power_limit_w_reason'), '{:.0f} W')}  "
            f"memory {_na(mem and mem / 2**30, None, '{:.0f} GiB')}  energy counter {g['energy_counter']}"
        )
    return "\n".join(lines)


def snapshot(nvml: Nvml, host: Host) -> dict[str, Any]:
    """One reading of every live sensor; each value or None with its reason."""
    gpus = []
    for g in nvml.gpus():
        d = {"nvml_index": g.index, "name": g.name().value}
        d.update(
            _reading_dict(
                power_instant_w=g.power_instant_w(),
                power_avg_1s_w=g.power_avg_1s_w(),
                sm_clock_mhz=g.sm_clock_mhz(),
                utilization_pct=g.utilization_pct(),
                temperature_c=g.temperature_c(),
                memory_used_bytes=g.memory_used_bytes(),
                memory_total_bytes=g.memory_total_bytes(),
            )
        )
        gpus.append(d)
    return {
        "t": time.time(),
        "nvml": "available" if nvml.available else nvml.reason,
        "gpus": gpus,
        "host": _reading_dict(
            cpu_util_pct=host.cpu_util_pct(),
            cpu_util_pct_per_core=host.cpu_util_pct_per_core(),
            cpu_freq_mhz=host.cpu_freq_mhz(),
            process_rss_bytes=host.process_rss_bytes(),
            memory_used_bytes=host.memory_used_bytes(),
            memory_total_bytes=host.memory_total_bytes(),
            temperatures_c=host.temperatures_c(),
        ),
    }


def format_snapshot(s: dict[str, Any]) -> str:
    lines = [time.strftime("%H:%M:%S", time.localtime(s["t"]))]
    if not s["gpus"]:
        lines.append(f"gpu    N/A ({s['nvml']})")
    for g in s["gpus"]:
        mem_used, mem_total = g["memory_used_bytes"], g["memory_total_bytes"]
        mem = f"{mem_used / 2**30:.1f}/{mem_total / 2**30:.0f} GiB" if mem_used is not None and mem_total else "N/A"
        lines.append(
            f"gpu{g['nvml_index']:<3} {g['name'] or 'N/A':<24} "
            f"{_na(g['power_instant_w'], None, '{:.0f} W')} instant "
            f"({_na(g['power_avg_1s_w'], None, '{:.0f} W')} 1 s avg)  "
            f"{_na(g['sm_clock_mhz'], None, '{} MHz')}  {_na(g['utilization_pct'], None, '{}%')} util  "
            f"{_na(g['temperature_c'], None, '{} °C')}  {mem}"
        )
    h = s["host"]
    per = " ".join(f"{x:.0f}" for x in h["cpu_util_pct_per_core"] or [])
    lines.append(
        f"host   cpu {_na(h['cpu_util_pct'], None, '{:.0f}%')} (cores {per})  "
        f"{_na(h['cpu_freq_mhz'], h.get('cpu_freq_mhz_reason'), '{:.0f} MHz')}  "
        f"mem {_na(h['memory_used_bytes'] and h['memory_used_bytes'] / 2**30, None, '{:.1f}')}"
        f"/{_na(h['memory_total_bytes'] and h['memory_total_bytes'] / 2**30, None, '{:.1f}')} GiB  "
        f"temps {_na(h['temperatures_c'], h.get('temperatures_c_reason'))}"
    )
    return "\n".join(lines)


def watch(interval_s: float, count: int | None, as_json: bool) -> None:
    """Print snapshots every ``interval_s`` until Ctrl-C (or ``count`` snapshots)."""
    import json

    nvml, host = Nvml(), Host()
    time.sleep(min(interval_s, 0.25))  # give CPU utilization an interval to average over
    tty = sys.stdout.isatty() and not as_json
    n = 0
    try:
        while count is None or n < count:
            if n:
                time.sleep(interval_s)
            s = snapshot(nvml, host)
            if as_json:
                print(json.dumps(s), flush=True)
            else:
                print(("\033[2J\033[H" if tty else "") + format_snapshot(s), flush=True)
            n += 1
    finally:
        nvml.close()


__all__ = ["NVIDIA_SMI_FIELDS", "describe", "format_text", "snapshot", "watch"]
