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
        from ...sensors.nvml import Nvml, gpu_for_torch_device

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


# -- what a performance engineer asks about a CPU before trusting a number -----------------------------
SYS_CPU = Path("/sys/devices/system/cpu")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_PROC_BIND", "KMP_AFFINITY")
PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> tuple[float | None, str | None]:
    """(cores allowed by the cgroup CPU quota, None with the reason when there is none or it is unreadable)."""
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota == "max":
            return None, "no cgroup CPU quota (cpu.max is max)"
        return int(quota) / int(period or 100000), None
    q, per = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if q and per:
        return (None, "no cgroup CPU quota (cfs_quota_us is -1)") if int(q) < 0 else (int(q) / int(per), None)
    return None, "no cgroup CPU controller readable"


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by the cgroup quota (not os.cpu_count())."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota, _ = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def cpu_method() -> dict[str, Any]:
    """Governor, frequencies, SMT, usable cores, cgroup quota, thread settings: each value or None + reason."""
    out: dict[str, Any] = {}

    def put(key: str, value: Any, reason: str) -> None:
        out[key] = value
        if value is None:
            out[f"{key}_reason"] = reason

    cpufreq = SYS_CPU / "cpu0" / "cpufreq"
    put("governor", _read(cpufreq / "scaling_governor"), "no cpufreq in sysfs (virtual machine or driver)")
    for name, f in (
        ("freq_cur_mhz", "scaling_cur_freq"),
        ("freq_min_mhz", "cpuinfo_min_freq"),
        ("freq_max_mhz", "cpuinfo_max_freq"),
    ):
        raw = _read(cpufreq / f)
        put(name, int(raw) / 1000 if raw and raw.isdigit() else None, "no cpufreq in sysfs")
    if out["freq_cur_mhz"] is None:
        try:
            import psutil

            f = psutil.cpu_freq()
            if f is not None and f.current:
                out["freq_cur_mhz"] = f.current
                out.pop("freq_cur_mhz_reason", None)
                out["freq_cur_mhz_source"] = "psutil (/proc/cpuinfo; may be constant in a VM)"
        except Exception:
            pass
    smt = _read(SYS_CPU / "smt" / "active")
    put("smt_active", None if smt is None else smt == "1", "/sys/devices/system/cpu/smt/active unreadable")
    try:
        out["affinity_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError) as e:
        put("affinity_cores", None, f"sched_getaffinity unavailable: {e}")
    quota, why = cgroup_cpu_quota()
    put("cgroup_quota_cores", quota, why or "")
    out["usable_cores"] = usable_cores()
    out["thread_env"] = {k: os.environ.get(k) for k in THREAD_ENV}
    out["flush_denormal"] = "not changed by NormScope (torch's default: denormals kept)"
    return out


def preloaded_allocator() -> str | None:
    """The allocator library named in LD_PRELOAD (jemalloc, tcmalloc, mimalloc), or None."""
    pre = os.environ.get("LD_PRELOAD", "")
    for lib in pre.replace(":", " ").split():
        if any(name in Path(lib).name for name in PRELOADED_ALLOCATORS):
            return lib
    return None
