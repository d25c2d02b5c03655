"""Execute a sweep group by group: checks first, one commit per point, clean cancel.

Everything that can be refused is refused before the run exists in the store
(unknown device, a shape that cannot fit). The run then measures what every
point is judged against (idle power cold, the copy ladder, idle power warm),
and times the points group by group (``group.py``: same shape, dtype and mode,
interleaved rounds). A failing point is recorded as failed and the sweep goes
on; Ctrl-C or SIGTERM marks the run cancelled and keeps the finished points.
On CUDA the sweep's device is made current for the whole run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ...analysis import rerun
from ...analysis.footprint import does_not_fit
from ...analysis.noise import Ratio
from ...catalog import Config
from ...runs import Outcome, stored_run
from ...sensors.host import Host
from ...sensors.nvml import Gpu, Nvml, gpu_for_torch_device
from ...sensors.sampler import Sampler
from ...spec import Point, SpecError, SweepSpec
from ...store import Store
from ...store.records import PointResult
from ..instruments import compile as compiling
from ..instruments import energy
from ..instruments.memory import available_bytes, set_cpu_allocator
from ..instruments.timing import CpuTimer, CudaEventTimer, CudaGraphTimer, Timer
from ..machine import hugepages, placement, provenance
from ..machine.copyprobe import cpu_cache_sizes, gpu_cache_sizes, measure_ladder, memory_state_probe
from ..machine.devices import resolve_device
from ..machine.disturbance import OTHERS_CORES_MAX, RUNQ_WAIT_MAX, STEAL_MAX, CpuProbe, GpuProbe, cpu_pressure
from .group import KERNELS, Kind, measure_group
from .point import Context

OnPoint = Callable[[int, int, Point, PointResult | None], None]  # done, total, the point, its result (None: started)


@dataclass
class SweepOutcome(Outcome):
    """How a sweep ended, with the results of the points it stored."""

    results: list[PointResult] = field(default_factory=list)


def check_fits(spec: Any, device: torch.device, kind: Kind = KERNELS) -> dict[Any, str]:
    """Points that cannot fit in the memory available now, with the reason; refuse the sweep when none fits."""
    free, what = available_bytes(device)
    too_big = {}
    for p in spec.points():
        why = does_not_fit(kind.need_bytes(p, spec), free, what)
        if why:
            too_big[p] = why
    if too_big and len(too_big) == len(spec.points()):
        p = min(too_big, key=lambda q: kind.need_bytes(q, spec))
        raise SpecError(f"no point of this sweep fits: {kind.key(p)} at {p.tokens} tokens {too_big[p]}")
    return too_big


def make_timer(spec: SweepSpec, device: torch.device, threads: int | None, kind: Kind = KERNELS) -> Timer:
    """The spec's timer; each visit of a round takes at least ``kind.visit_samples`` samples."""
    least = kind.visit_samples
    if device.type == "cpu":
        return CpuTimer(spec.warmup_ms, spec.budget_ms, threads=threads, min_samples=least)
    cls = CudaGraphTimer if spec.cuda_graph else CudaEventTimer
    if cls is CudaGraphTimer:
        return cls(
            spec.warmup_ms, spec.budget_ms, device, cache_state=spec.cache_state, flush=spec.flush, min_samples=least
        )
    return cls(
        spec.warmup_ms,
        spec.budget_ms,
        device,
        cache_state=spec.cache_state,
        flush=spec.flush,
        launch=spec.cuda_launch,
        min_samples=least,
    )


def groups_of(spec: Any) -> list[list[tuple[int, Any]]]:
    """Points that share shape, dtype and mode (with their sequence numbers), in the spec's order."""
    groups: dict[tuple, list[tuple[int, Any]]] = {}
    for seq, p in enumerate(spec.points()):
        groups.setdefault((p.tokens, getattr(p, "hidden", None), p.dtype, p.mode), []).append((seq, p))
    return list(groups.values())


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make the sweep's CUDA device current, so default streams, allocations and graph capture are its own."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


def preflight(spec: Any, kind: Kind = KERNELS) -> torch.device:
    """All checks that can refuse a sweep; raises SpecError."""
    device = resolve_device(spec.device)
    kind.check(spec)
    check_fits(spec, device, kind)
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
    spec: Any,
    store: Store,
    progress: OnPoint | None = None,
    timer: Timer | None = None,
    label: str | None = None,
    probe: object | None = None,
    kind: Kind = KERNELS,
) -> SweepOutcome:
    """Run a kernel sweep (a SweepSpec), or a block sweep (a BlockSweepSpec with ``kind=BLOCKS``)."""
    device = preflight(spec, kind)
    threads = spec.threads or provenance.usable_cores()
    torch.set_num_threads(threads)
    with on_device(device):
        return _run(spec, store, device, threads, progress, timer, label, probe, kind)


def _run(
    spec: Any,
    store: Store,
    device: torch.device,
    threads: int,
    progress: OnPoint | None,
    timer: Timer | None,
    label: str | None,
    probe: object | None,
    kind: Kind,
) -> SweepOutcome:
    points = spec.points()
    session = Session.create(spec, store, device, threads, timer, label, kind, len(points))
    outcome = SweepOutcome(session.run_id)
    with stored_run(store, outcome), contextlib.ExitStack() as closing:
        closing.callback(session.close)
        session.prepare(probe)
        done = 0
        for group in groups_of(spec):
            seqs = {p: seq for seq, p in group}

            def commit(p: Any, res: PointResult | None, seqs: dict[Any, int] = seqs) -> None:
                """Each point is committed as soon as it is resolved (skipped and failed ones at once)."""
                nonlocal done
                if res is not None:
                    store.add_point(session.run_id, seqs[p], res)
                    outcome.results.append(res)
                    done += 1
                if progress:
                    progress(done, len(points), p, res)

            session.measure(group, commit)
    return outcome


@dataclass
class Session:
    """One device's run: its record, its sensors, what every point is judged against (idle power, the copy
    ladder, the machine's calibration) and the context its groups are timed in. A local sweep opens one and
    times every group in it; a sweep over a cluster (``fleet.py``) opens one per device and hands it the
    groups the scheduler gives that device."""

    spec: Any
    store: Store
    device: torch.device
    kind: Kind
    run_id: int
    sensors: Sensors
    timer: Timer
    machine: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    ctx: Context | None = None
    probe: Any = None

    @classmethod
    def create(
        cls,
        spec: Any,
        store: Store,
        device: torch.device,
        threads: int,
        timer: Timer | None,
        label: str | None,
        kind: Kind,
        planned: int,
        fleet: dict[str, Any] | None = None,
    ) -> Session:
        """The run's record (status running) with the machine as measured now; ``fleet`` is stored with it."""
        allocator = set_cpu_allocator(spec.cpu_allocator) if device.type == "cpu" else None
        # inductor costs 1-2 s to import: configured only for a sweep that compiles (a spec without impls may)
        compiles = "compiled" in getattr(spec, "impls", ("compiled",))
        compile_setting = compiling.configure(device.type) if compiles else "not used (no compiled implementation)"
        sensors = Sensors.open(spec, device)
        machine = provenance.machine(str(device) if fleet else spec.device, nvml=sensors.nvml)
        machine["cpu_allocator"] = allocator
        if device.type == "cpu":
            machine["cpu_pages"] = hugepages.state(spec.cpu_pages)
            machine["cpu_placement"] = placement.recorded(spec.cpu_placement, kernels=kind is KERNELS)
        machine["cpu_method"] = provenance.cpu_method()
        machine["threads"] = threads
        machine["compile"] = compile_setting
        the_timer = timer or make_timer(spec, device, threads if device.type == "cpu" else None, kind)
        machine["timing_method"] = the_timer.method  # what timed the points (cold CUDA: queued only with a spin kernel)
        try:
            run_id = store.create_run(spec, machine, provenance.versions(), planned, label=label, kind=kind.run_kind)
        except BaseException:
            sensors.close()
            raise
        extra = {"fleet": fleet} if fleet else {}
        if fleet:  # from the start: a cancel while the device prepares finds its run by the sweep's uid
            store.update_run(run_id, extra=extra)
        return cls(spec, store, device, kind, run_id, sensors, the_timer, machine, extra)

    def prepare(self, probe: object | None = None) -> None:
        """Measure what the points are judged against, before any of them: idle power cold, the copy ladder,
        idle power warm; and read the machine's calibration."""
        spec, store, device, run_id, sensors = self.spec, self.store, self.device, self.run_id, self.sensors
        meter = None
        idle_cold = idle_warm = None
        if spec.energy:
            meter = energy.choose_meter(device.type, sensors.gpu, sensors.sampler, sensors.host.rapl)
            _sync(device)
            idle_cold = energy.idle_power(meter, seconds=1.0)  # before any load
        store.update_run(run_id, idle_power_w=idle_cold, sensors=sensors.describe(meter))
        caches = cpu_cache_sizes() if device.type == "cpu" else gpu_cache_sizes(device)
        # blocks are judged by time and component shares, not against copy bandwidth: no ladder
        kernels = self.kind is KERNELS
        ladder = measure_ladder(device, self.timer, caches, available_bytes(device)[0]) if kernels else None
        if meter is not None:
            idle_warm = energy.idle_power(meter, seconds=1.0)  # right after load: what dynamic energy uses
        self.probe = probe or (CpuProbe() if device.type == "cpu" else GpuProbe(sensors.gpu))
        extra = self.extra
        extra.update(
            {
                "ladder": ladder.to_dict() if ladder else None,
                "idle_power_cold_w": idle_cold,
                "idle_power_warm_w": idle_warm,
                "pressure_start": cpu_pressure(),
                "disturbance": {
                    "probe": getattr(self.probe, "reason", None) or type(self.probe).__name__,
                    "runq_wait_max": RUNQ_WAIT_MAX,
                    "others_cores_max": OTHERS_CORES_MAX,
                    "steal_max": STEAL_MAX,
                },
            }
        )
        idle_w = idle_warm if idle_warm is not None else idle_cold
        store.update_run(run_id, copy_gbps=ladder.top_gbps if ladder else None, idle_power_w=idle_w, extra=extra)
        calibration, calibration_note = rerun.calibration_for(store, self.machine, provenance.versions())
        extra["rerun"] = {"calibration": calibration["source"] if calibration else None, "note": calibration_note}
        # the baseline's time says something about the machine's state only when measured as the calibration was
        same_method = bool(calibration) and calibration.get("method") == rerun.method_of(spec.to_dict())
        self.ctx = Context(
            spec,
            device,
            Config(eps=spec.eps, groups=spec.groups),
            self.timer,
            ladder.top_gbps if ladder else None,
            meter=meter,
            idle_power_w=idle_w,
            sampler=sensors.sampler,
            trace_dir=store.local_dir / "traces" / f"run{run_id}",
            ladder=ladder,
            judge_group=lambda results: judge_group(results, calibration, same_method),
            memory_state=_memory_state(device, self.timer, ladder),
        )

    def measure(self, group: list[tuple[int, Any]], announce: Any = None) -> list[PointResult]:
        """Time one group (its points with their sequence numbers) in interleaved rounds; ``announce(p, res)``
        hears each point start (res None) and resolve."""
        if self.ctx is None:
            raise RuntimeError("Session.prepare() comes before measure()")
        return measure_group([p for _, p in group], self.ctx, self.probe, announce=announce, kind=self.kind)

    def close(self) -> None:
        """However the run ends: the sensors stop, their series and the run's closing fields are stored."""
        self.extra["pressure_end"] = cpu_pressure()
        try:
            if self.ctx is not None:
                self.store.update_run(self.run_id, extra=self.extra)
        finally:
            self.kind.close()
            _close(self.store, self.run_id, self.sensors)


def judge_group(results: list[PointResult], calibration: dict[str, Any] | None, same_method: bool = False) -> None:
    """A timed group against the machine's calibration, before it is stored: each candidate's rerun interval
    (where a rerun's ratio is expected, in the memory state the group's probes name and in the other one,
    its parts kept); a baseline beyond the calibrated range of its shape, dtype and mode, or memory probes
    that span two states or none the calibration saw (measured as the calibration was), say the machine
    changed state, and the group's points are then never ``ok``."""
    baselines = [
        (res.p50_us, res.roofline_level, rerun.shape_key(res.tokens, res.hidden, res.dtype, res.mode))
        for res in results
        if res.ratio == res.ratio_lo == res.ratio_hi == 1.0
    ]
    cal = calibration if same_method else None
    changed = rerun.group_state_change(baselines, cal)
    if cal and results:
        changed = changed or rerun.memory_state_change({"extra": results[0].extra}, cal)
    for res in results:
        timed_ratio = res.ratio is not None and res.ratio_lo is not None and res.ratio_hi is not None
        if timed_ratio and res.rounds and not res.ratio == res.ratio_lo == res.ratio_hi == 1.0:
            interval = Ratio(res.ratio, res.ratio_lo, res.ratio_hi, "paired rounds")
            point = {
                "roofline_level": res.roofline_level,
                "extra": res.extra,
                "ratio_baseline": res.ratio_baseline,
                **{k: getattr(res, k) for k in ("tokens", "hidden", "dtype", "mode", "variant", "impl")},
            }
            res.extra["rerun"] = rerun.point_rerun(interval, point, cal or calibration, res.rounds).to_dict()
        if changed:
            res.extra["state_change"] = changed
            if res.status == "ok":
                res.status, res.error = "unstable", changed


def _memory_state(device: torch.device, timer: Any, ladder: Any) -> Any:
    """The probe of the memory state each CPU group is timed in (the ladder's top copy), or None (a GPU, or no
    ladder: blocks and labs)."""
    if device.type != "cpu" or ladder is None or not ladder.rungs:
        return None
    nbytes = max(ladder.rungs)[0]
    return lambda: memory_state_probe(device, timer, nbytes)


def _close(store: Store, run_id: int, sensors: Sensors) -> None:
    """Before the run's record is finished, however it ends: the sensors stop and their series is stored."""
    sensors.close()
    if sensors.sampler is not None:
        store.update_run(run_id, series=sensors.sampler.series())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
