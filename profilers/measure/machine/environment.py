"""`python -m profilers env`: what this machine is and what NormScope can measure on it (imports torch)."""

from __future__ import annotations

from typing import Any

from ...sensors.host import Host
from ...sensors.live import na_text, reading_dict
from ...sensors.nvml import NVIDIA_SMI_FIELDS, Nvml, normalize_uuid
from . import provenance


def describe(nvml: Nvml | None = None, host: Host | None = None) -> dict[str, Any]:
    import torch

    from ...catalog import c_compiler_available, liger_available

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
        "host": reading_dict(
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


def format_text(info: dict[str, Any]) -> str:
    m, v, nv = info["machine"], info["versions"], info["nvml"]
    nvml_line = f"available, driver {nv.get('driver_version')}" if nv["available"] else f"N/A ({nv['reason']})"
    rapl = info["rapl"]
    rapl_line = f"available: {', '.join(rapl['domains'])}" if rapl["available"] else f"N/A ({rapl['reason']})"
    host = info["host"]
    lines = [
        f"host        {m['hostname']} ({m['os']}, {m['arch']})",
        f"cpu         {m['cpu_model']}: {m['cpu_cores_physical']} physical / {m['cpu_cores_logical']} logical cores,"
        f" {na_text(host['cpu_freq_mhz'], host.get('cpu_freq_mhz_reason'), '{:.0f} MHz')}",
        f"memory      {m['ram_bytes'] / 2**30:.1f} GiB",
        f"python      {v['python']}   torch {v['torch']} (CUDA {na_text(v['torch_cuda'], 'CPU build')})",
        f"triton      {na_text(v['triton'], 'not installed')}   "
        f"liger-kernel {na_text(v['liger_kernel'], 'not installed')}",
        f"normscope   commit {na_text(v['normscope_commit'], v.get('normscope_commit_reason'))}"
        + (" (dirty)" if v.get("normscope_dirty") else ""),
        f"torch.compile on CPU: {info['torch_compile_cpu']}",
        f"CUDA        {'available' if info['cuda_available'] else 'not available to torch'}",
        f"NVML        {nvml_line}",
        f"RAPL        {rapl_line}",
        f"temps       {na_text(host['temperatures_c'], host.get('temperatures_c_reason'))}",
    ]
    for g in info["gpus"]:
        mem = g.get("memory_total_bytes")
        lines.append(
            f"gpu {g['nvml_index']}       {na_text(g.get('name'), g.get('name_reason'))}  {na_text(g.get('uuid'))}  "
            f"torch {na_text(g.get('torch_device'), 'not visible to torch')}  "
            f"power limit {na_text(g.get('power_limit_w'), g.get('power_limit_w_reason'), '{:.0f} W')}  "
            f"memory {na_text(mem and mem / 2**30, None, '{:.0f} GiB')}  energy counter {g['energy_counter']}"
        )
    return "\n".join(lines)


__all__ = ["NVIDIA_SMI_FIELDS", "describe", "format_text"]
