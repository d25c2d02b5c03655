"""`python -m profilers env`: what this machine is and what can be measured on it."""

from __future__ import annotations

from typing import Any

from . import provenance
from .sensors.nvml import Nvml, normalize_uuid
from .variants import c_compiler_available, liger_available


def describe(nvml: Nvml | None = None) -> dict[str, Any]:
    import torch

    nv = nvml if nvml is not None else Nvml()
    info: dict[str, Any] = {
        "machine": provenance.machine("cpu"),
        "versions": provenance.versions(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "torch_compile_cpu": c_compiler_available() or "available",
        "liger": liger_available() or "available",
        "nvml": {"available": nv.available, "reason": nv.reason},
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
        info["gpus"].append(d)
    nv.close()
    return info


def _na(value: Any, reason: str | None = None, fmt: str = "{}") -> str:
    if value is None:
        return f"N/A ({reason})" if reason else "N/A"
    return fmt.format(value)


def format_text(info: dict[str, Any]) -> str:
    m, v, nv = info["machine"], info["versions"], info["nvml"]
    nvml_line = f"available, driver {nv.get('driver_version')}" if nv["available"] else f"N/A ({nv['reason']})"
    lines = [
        f"host        {m['hostname']} ({m['os']}, {m['arch']})",
        f"cpu         {m['cpu_model']}: {m['cpu_cores_physical']} physical / {m['cpu_cores_logical']} logical cores",
        f"memory      {m['ram_bytes'] / 2**30:.1f} GiB",
        f"python      {v['python']}   torch {v['torch']} (CUDA {_na(v['torch_cuda'], 'CPU build')})",
        f"triton      {_na(v['triton'], 'not installed')}   liger-kernel {_na(v['liger_kernel'], 'not installed')}",
        f"normscope   commit {_na(v['normscope_commit'], v.get('normscope_commit_reason'))}"
        + (" (dirty)" if v.get("normscope_dirty") else ""),
        f"torch.compile on CPU: {info['torch_compile_cpu']}",
        f"CUDA        {'available' if info['cuda_available'] else 'not available to torch'}",
        f"NVML        {nvml_line}",
    ]
    for g in info["gpus"]:
        lines.append(
            f"gpu {g['nvml_index']}       {_na(g.get('name'), g.get('name_reason'))}  {_na(g.get('uuid'))}  "
            f"torch {_na(g.get('torch_device'), 'not visible to torch')}  "
            f"power limit {_na(g.get('power_limit_w'), g.get('power_limit_w_reason'), '{:.0f} W')}  "
            f"memory {_na(g.get('memory_total_bytes') and g['memory_total_bytes'] / 2**30, None, '{:.0f} GiB')}"
        )
    return "\n".join(lines)
