"""Where a number came from: the machine, the software versions, the code's commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the NormScope checkout, or None with the reason."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None, "reason": "not a git checkout (or no commit yet)"}
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()), "reason": None}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "dirty": None, "reason": f"git unavailable: {e}"}


def versions() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "liger_kernel": _version("liger-kernel"),
        "nvidia_ml_py": _version("nvidia-ml-py"),
        "psutil": _version("psutil"),
    }
    g = git_state()
    out["normscope_commit"] = g["commit"]
    out["normscope_dirty"] = g["dirty"]
    if g["reason"]:
        out["normscope_commit_reason"] = g["reason"]
    return out


def machine(device: str = "cpu", nvml: Any = None) -> dict[str, Any]:
    """The host, and the GPU the run uses (matched to NVML by UUID)."""
    import psutil
    import torch

    m: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "python_executable": sys.executable,
        "device": device,
        "gpu": None,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.split(":")[1]) if ":" in device else 0
        props = torch.cuda.get_device_properties(index)
        gpu: dict[str, Any] = {
            "torch_index": index,
            "name": props.name,
            "memory_total_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "cuda_runtime": torch.version.cuda,
        }
        from ..sensors.nvml import Nvml, gpu_for_torch_device

        nv = nvml if nvml is not None else Nvml()
        if nv.available:
            gpu["driver_version"] = nv.driver_version().value
            gpu["cuda_driver"] = nv.cuda_driver_version().value
            g = gpu_for_torch_device(nv, index)
            if g is not None:
                info = g.info()
                gpu["uuid"] = info.get("uuid")
                gpu["power_limit_w"] = info.get("power_limit_w")
                if info.get("power_limit_w_reason"):
                    gpu["power_limit_w_reason"] = info["power_limit_w_reason"]
            else:
                gpu["nvml_reason"] = "no NVML device matches this GPU's UUID"
        else:
            gpu["nvml_reason"] = nv.reason
        m["gpu"] = gpu
    return m
