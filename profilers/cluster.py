"""A Ray cluster as NormScope sees it: joining one, and the devices it offers a sweep.

``--ray auto`` joins the cluster this host belongs to, ``local`` starts one on this machine alone, an address
(``HOST:PORT``, ``ray://HOST:PORT``) joins that one, checked on its port first (Ray retries an unreachable
address for minutes). A device is each GPU of a live node for a CUDA sweep, each live node's CPUs for a CPU
sweep. No torch here; Ray is imported when a cluster is asked for.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runs import first_line
from .spec import SpecError

ROOT = str(Path(__file__).resolve().parents[1])  # the workers import this NormScope


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpecError("--ray needs the ray package: .venv/bin/pip install -r requirements.txt") from None
    return ray


# -- the cluster ----------------------------------------------------------------------------
def connect(address: str) -> Any:
    """Join the Ray cluster at ``address`` (``auto``: the one this host belongs to; ``local``: start one on this
    machine alone) with NormScope importable by its workers; SpecError in one line when there is none."""
    ray = _ray()
    kw: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": "ERROR",
        "runtime_env": {
            "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH"))))}
        },
    }
    reach(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        raise SpecError(
            f"cannot join a Ray cluster at {address} ({first_line(e)[:160]}): start one with `ray start --head` "
            "and give its address, or --ray local for this machine alone"
        ) from None
    return ray


def reach(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address answers on its port, checked before Ray is asked (Ray retries an unreachable one for
    minutes); ``auto`` and ``local`` are Ray's to find or start."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(
            f"--ray {address}: give HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:PORT, auto or local"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SpecError(
            f"cannot join a Ray cluster at {address} ({e.strerror or type(e).__name__}): start one with "
            "`ray start --head` and give its address, or --ray local for this machine alone"
        ) from None


@dataclass(frozen=True)
class Slot:
    """One device of the cluster: where its worker runs and what it holds there."""

    index: int
    node_id: str
    node_ip: str
    options: dict[str, Any]
    kind: str  # cuda or cpu

    @property
    def name(self) -> str:
        """How progress lines name it: its place, node and kind (one host may run several nodes)."""
        return f"device {self.index + 1} ({self.node_ip}/{self.node_id[:6]} {self.kind})"


def slots(ray: Any, device_type: str) -> list[Slot]:
    """The cluster's devices for a sweep on ``device_type``: each GPU of each live node, or each live node's CPUs."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    out: list[Slot] = []
    for node in sorted(ray.nodes(), key=lambda n: (n["NodeManagerAddress"], n["NodeID"])):
        if not node.get("Alive"):
            continue
        res = node.get("Resources") or {}
        pin = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        if device_type == "cuda":
            for _ in range(int(res.get("GPU", 0))):
                options = {"num_gpus": 1, "num_cpus": 1, "scheduling_strategy": pin}
                out.append(Slot(len(out), node["NodeID"], node["NodeManagerAddress"], options, "cuda"))
        elif res.get("CPU", 0) >= 1:
            options = {"num_cpus": int(res["CPU"]), "scheduling_strategy": pin}
            out.append(Slot(len(out), node["NodeID"], node["NodeManagerAddress"], options, "cpu"))
    if not out:
        what = "GPU" if device_type == "cuda" else "node with a CPU"
        raise SpecError(f"the Ray cluster has no live {what}: add one (`ray start --address …`) or run without --ray")
    return out


def nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's nodes as a table: address, whether alive, CPUs, GPUs (with their kind where Ray knows it),
    memory, and the devices a CPU and a CUDA sweep would get there."""
    out = []
    for node in sorted(ray.nodes(), key=lambda n: (n["NodeManagerAddress"], n["NodeID"])):
        res = node.get("Resources") or {}
        kinds = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
        alive = bool(node.get("Alive"))
        out.append(
            {
                "node": node["NodeManagerAddress"],
                "node_id": node["NodeID"][:12],
                "alive": alive,
                "cpus": int(res.get("CPU", 0)),
                "gpus": int(res.get("GPU", 0)),
                "gpu_kind": ", ".join(kinds) or None,
                "memory_gib": round(res["memory"] / 2**30, 1) if res.get("memory") else None,
                "cpu_sweep_devices": 1 if alive and res.get("CPU", 0) >= 1 else 0,
                "cuda_sweep_devices": int(res.get("GPU", 0)) if alive else 0,
            }
        )
    return out


def describe(address: str) -> list[dict[str, Any]]:
    """Join the cluster at ``address`` just long enough to list its nodes."""
    ray = connect(address)
    try:
        return nodes(ray)
    finally:
        ray.shutdown()
