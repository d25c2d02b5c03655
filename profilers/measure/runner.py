"""Execute a sweep point by point: checks first, one commit per point, clean cancel.

Everything that can be refused is refused before the run exists in the store
(unknown device, a shape that cannot fit). During the sweep a failing point is
recorded as failed and the sweep goes on; Ctrl-C or SIGTERM marks the run
cancelled and keeps the finished points.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ..analysis.footprint import estimate_point_bytes
from ..catalog import DTYPES, Config
from ..sensors.host import Host
from ..sensors.nvml import Gpu, Nvml, gpu_for_torch_device
from ..sensors.sampler import Sampler
from ..spec import Point, SpecError, SweepSpec
from ..store import Store
from ..store.records import PointResult
from . import energy, provenance
from .copyprobe import copy_bandwidth_gbps
from .memory import available_bytes, keep_freed_memory
from .point import Context, measure_point
from .timing import CpuTimer, CudaEventTimer, CudaGraphTimer, Timer

Progress = Callable[[int, int, Point, PointResult | None], None]


class Cancelled(Exception):
    """The user asked the sweep to stop (SIGTERM)."""


@dataclass
class Outcome:
    run_id: int
    status: str
    results: list[PointResult] = field(default_factory=list)
    error: str | None = None


def resolve_device(spec: SweepSpec) -> torch.device:
    """The torch device for a spec, or SpecError naming what is missing."""
    if spec.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SpecError(
            f"device {spec.device} is not available: torch {torch.__version__} sees no CUDA GPU; use --device cpu"
        )
    index = int(spec.device.split(":")[1])
    count = torch.cuda.device_count()
    if index >= count:
        raise SpecError(
            f"device {spec.device} does not exist: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}"
        )
    return torch.device(spec.device)


def check_fits(spec: SweepSpec, device: torch.device) -> None:
    """Refuse a sweep whose largest point cannot fit, before allocating anything."""
    free, what = available_bytes(device)
    budget = int(free * 0.9)
    for tokens, hidden in spec.shapes:
        for dtype in spec.dtypes:
            elem = DTYPES[dtype]
            for variant in spec.variants:
                for mode in spec.modes:
                    need = estimate_point_bytes(variant, mode, tokens, hidden, elem)
                    if need > budget:
                        raise SpecError(
                            f"shape {tokens}x{hidden} ({variant}, {dtype}, {mode}) needs about {need / 2**30:.1f} GiB "
                            f"but only {free / 2**30:.1f} GiB is {what}: use fewer tokens or a smaller hidden size"
                        )


def make_timer(spec: SweepSpec, device: torch.device, threads: int | None) -> Timer:
    if device.type == "cpu":
        return CpuTimer(spec.warmup_ms, spec.budget_ms, threads=threads)
    if spec.cuda_graph:
        return CudaGraphTimer(spec.warmup_ms, spec.budget_ms, device)
    return CudaEventTimer(spec.warmup_ms, spec.budget_ms, device)


@contextlib.contextmanager
def _sigterm_cancels() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Cancelled()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prepare(spec: SweepSpec) -> torch.device:
    """All checks that can refuse a sweep; raises SpecError."""
    device = resolve_device(spec)
    check_fits(spec, device)
    return device


@dataclass
class Sensors:
    """The run's sensors: each present or a null stand-in with its reason."""

    nvml: Nvml
    gpu: Gpu | None
    host: Host
    sampler: Sampler | None

    @classmethod
    def open(cls, spec: SweepSpec, device: torch.device) -> Sensors:
        nvml = Nvml()
        gpu = gpu_for_torch_device(nvml, device.index or 0) if device.type == "cuda" and nvml.available else None
        host = Host()
        sampler = None
        if spec.sample_ms:
            sampler = Sampler(gpu, host, spec.sample_ms / 1000.0).start()
        return cls(nvml, gpu, host, sampler)

    def describe(self, meter: energy.Meter | None) -> dict[str, object]:
        return {
            "nvml": "available" if self.nvml.available else self.nvml.reason,
            "gpu_uuid": self.gpu.uuid().value if self.gpu else None,
            "rapl": "available" if self.host.rapl.available else self.host.rapl.reason,
            "sample_period_s": self.sampler.period_s if self.sampler else None,
            "energy_method": meter.method if meter and not meter.reason else None,
            "energy_reason": (meter.reason if meter else "not requested (--energy)"),
        }

    def close(self) -> None:
        if self.sampler:
            self.sampler.stop()
        self.nvml.close()


def run_sweep(
    spec: SweepSpec,
    store: Store,
    progress: Progress | None = None,
    timer: Timer | None = None,
    label: str | None = None,
) -> Outcome:
    device = prepare(spec)
    threads = spec.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    sensors = Sensors.open(spec, device)
    machine = provenance.machine(spec.device, nvml=sensors.nvml)
    machine["cpu_allocator"] = keep_freed_memory()
    points = spec.points()
    run_id = store.create_run(spec, machine, provenance.versions(), len(points), label=label)
    outcome = Outcome(run_id, "running")
    cfg = Config(eps=spec.eps, groups=spec.groups)
    try:
        with _sigterm_cancels():
            meter = None
            idle_w = None
            if spec.energy:
                meter = energy.choose_meter(device.type, sensors.gpu, sensors.sampler, sensors.host.rapl)
                _sync(device)
                idle_w = energy.idle_power(meter, seconds=1.0)  # before any load, for dynamic energy
            store.update_run(run_id, idle_power_w=idle_w, sensors=sensors.describe(meter))
            copy = copy_bandwidth_gbps(device)  # also warms clocks, thread pool and allocator
            store.update_run(run_id, copy_gbps=copy)
            ctx = Context(
                spec,
                device,
                cfg,
                timer or make_timer(spec, device, threads if device.type == "cpu" else None),
                copy,
                meter=meter,
                idle_power_w=idle_w,
                sampler=sensors.sampler,
                trace_dir=store.path.parent / "traces" / f"run{run_id}",
            )
            for seq, p in enumerate(points):
                if progress:
                    progress(seq, len(points), p, None)
                res = measure_point(p, ctx)
                store.add_point(run_id, seq, res)
                outcome.results.append(res)
                if progress:
                    progress(seq + 1, len(points), p, res)
        outcome.status = "completed"
    except (KeyboardInterrupt, Cancelled):
        outcome.status = "cancelled"
        outcome.error = "cancelled by the user"
    except Exception as e:
        outcome.status = "failed"
        outcome.error = f"{type(e).__name__}: {e}".splitlines()[0]
        _close(store, run_id, sensors, outcome)
        raise
    _close(store, run_id, sensors, outcome)
    return outcome


def _close(store: Store, run_id: int, sensors: Sensors, outcome: Outcome) -> None:
    sensors.close()
    if sensors.sampler is not None:
        store.update_run(run_id, series=sensors.sampler.series())
    store.finish_run(run_id, outcome.status, outcome.error)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
