"""What to measure: a declarative sweep that round-trips through JSON.

A SweepSpec says *what* runs; it holds no measurement. Every field is validated
when the spec is built, so a bad flag or a bad JSON file fails before anything is
allocated or stored.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from . import catalog
from .catalog import DTYPE_ALIASES

VARIANTS: tuple[str, ...] = tuple(catalog.VARIANTS)
IMPLS: tuple[str, ...] = tuple(catalog.KERNEL_IMPLS)  # what a kernel sweep times
MODES: tuple[str, ...] = tuple(catalog.MODES)
DTYPES: tuple[str, ...] = tuple(catalog.DTYPES)
# "cuda_event": warm blocks launched at the CPU's pace, before blocks were queued behind a spin kernel (kept
# so older runs import)
TIMING_METHODS = (
    "cpu_blocks",
    "cuda_event_flush_queued",
    "cuda_event_flush",
    "cuda_event_queued",
    "cuda_event",
    "cuda_graph",
)
CACHE_STATES = ("cold", "warm")
FLUSH_METHODS = ("zero", "read")
# CUDA cold calls: queued behind a spin kernel (the GPU's time) or timed as launched (do_bench; a slow launch counts)
CUDA_LAUNCHES = ("queued", "direct")
CPU_ALLOCATORS = {
    "reuse": "glibc told to keep freed memory (mmap off, no trim): times exclude page faults, as with a "
    "caching allocator (jemalloc, tcmalloc, the CUDA caching allocator)",
    "system": "the process's allocator untouched: glibc's default mmaps large tensors afresh, so times include "
    "page faults, as a plain PyTorch CPU process sees them",
}
CPU_PAGES = {
    "huge": "torch's CPU tensors of 2 MiB and more on 2 MiB transparent huge pages: far less of the per-process "
    "draw of 4 KiB pages that moves CPU times and ratios between runs",
    "base": "torch's default placement (4 KiB pages unless the kernel's transparent huge pages are 'always'), "
    "as a plain PyTorch CPU process gets it",
}
CPU_PLACEMENTS = {
    "round": "a new memory placement each round (inputs copied, a random spacer held): the rounds sample "
    "placements and their interval includes that variation",
    "fixed": "inputs allocated once: every round sees the process's one placement (tighter intervals that a "
    "fresh process may not reproduce)",
}
# interleaved rounds: (rounds, CI half-width target %) per accuracy preset; rounds double at most
ROUND_PRESETS = {"quick": (7, 5.0), "default": (7, 3.0), "accurate": (15, 3.0)}
MAX_TOKENS = 1 << 24
MAX_HIDDEN = 1 << 20
# energy windows per repeat, seconds: the NVML counter updates about every 100 ms
ENERGY_WINDOWS_S = {"quick": 1.0, "accurate": 5.0}


class SpecError(ValueError):
    """A sweep that cannot run as written; the message names the fix."""


def check_fields(cls: type, d: Any, what: str) -> dict[str, Any]:
    """``d`` as the keyword arguments of the spec dataclass ``cls``: a JSON object naming only its fields."""
    if not isinstance(d, dict):
        raise SpecError(f"a {what} must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SpecError(f"unknown {what} field(s) {', '.join(unknown)}: allowed are {', '.join(sorted(known))}")
    return d


def _lists(v: Any) -> Any:
    """Tuples (nested ones too) as lists: what JSON holds and the specs' constructors accept back."""
    return [_lists(x) for x in v] if isinstance(v, (tuple, list)) else v


class JsonSpec:
    """The JSON round trip every spec dataclass shares: tuples out as lists, unknown fields refused on the
    way in, one-line errors naming the spec (``_what``). A spec with more to check overrides ``from_dict``."""

    _what: ClassVar[str] = "spec"

    def to_dict(self) -> dict[str, Any]:
        return {k: _lists(v) for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> Any:
        check_fields(cls, d, cls._what)
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Any:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{cls._what} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class ModelPreset:
    """Typical normalized-activation shapes of a known model, and its block's shape (for the block builder)."""

    name: str
    hidden: int
    tokens: tuple[int, ...]
    description: str
    heads: int | None = None
    kv_heads: int | None = None  # key/value heads (grouped-query attention when fewer than heads)
    ffn: int | None = None  # MLP inner size
    layers: int | None = None
    family: str | None = None  # block family in catalog.BLOCK_FAMILIES
    seq_len: int | None = None  # tokens per sequence (tokens = batch × seq_len)

    def shapes(self) -> list[tuple[int, int]]:
        return [(t, self.hidden) for t in self.tokens]


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            "bert-base",
            768,
            (512, 4096, 16384),
            "BERT-base: hidden 768, batches of 512-token sequences",
            heads=12,
            kv_heads=12,
            ffn=3072,
            layers=12,
            family="encoder",
            seq_len=512,
        ),
        ModelPreset(
            "vit-b",
            768,
            (197, 3152, 12608),
            "ViT-B/16: hidden 768, 197 tokens per 224px image, batch 1/16/64",
            heads=12,
            kv_heads=12,
            ffn=3072,
            layers=12,
            family="encoder",
            seq_len=197,
        ),
        ModelPreset(
            "llama-3-8b",
            4096,
            (2048, 8192, 32768),
            "Llama-3-8B: hidden 4096, 2k-32k tokens per step",
            heads=32,
            kv_heads=8,
            ffn=14336,
            layers=32,
            family="decoder",
            seq_len=8192,
        ),
        ModelPreset(
            "llama-3-70b",
            8192,
            (2048, 8192, 32768),
            "Llama-3-70B: hidden 8192, 2k-32k tokens per step",
            heads=64,
            kv_heads=8,
            ffn=28672,
            layers=80,
            family="decoder",
            seq_len=8192,
        ),
        ModelPreset(
            "tiny-decoder",
            64,
            (128, 512),
            "A tiny Llama-style decoder (hidden 64, 4 heads): a quick look, in seconds",
            heads=4,
            kv_heads=2,
            ffn=192,
            layers=2,
            family="decoder",
            seq_len=64,
        ),
    )
}


def normalize_dtype(name: str) -> str:
    key = name.strip().lower().removeprefix("torch.")
    key = DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise SpecError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)} (or bf16, fp16, fp32)")
    return key


def parse_shape(text: str) -> tuple[int, int]:
    """Parse 'TOKENSxHIDDEN' (e.g. 4096x768)."""
    m = re.fullmatch(r"\s*(-?\d+)\s*[xX×]\s*(-?\d+)\s*", text)
    if not m:
        raise SpecError(f"malformed shape {text!r}: write TOKENSxHIDDEN, e.g. 4096x768")
    shape = (int(m.group(1)), int(m.group(2)))
    _check_shape(shape)
    return shape


def _check_shape(shape: Any) -> tuple[int, int]:
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
    ):
        raise SpecError(f"malformed shape {shape!r}: a shape is [tokens, hidden], two integers")
    tokens, hidden = shape
    if tokens <= 0 or hidden <= 0:
        raise SpecError(f"shape {tokens}x{hidden} must be positive: tokens and hidden are at least 1")
    if tokens > MAX_TOKENS or hidden > MAX_HIDDEN:
        raise SpecError(f"shape {tokens}x{hidden} is out of range: tokens ≤ {MAX_TOKENS}, hidden ≤ {MAX_HIDDEN}")
    return (tokens, hidden)


def _check_choices(kind: str, values: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not values:
        raise SpecError(f"{kind}s must be a non-empty list: choose from {', '.join(allowed)}")
    out = []
    for v in values:
        if v not in allowed:
            raise SpecError(f"unknown {kind} {v!r}: use one of {', '.join(allowed)}")
        if v not in out:
            out.append(v)
    return tuple(out)


def _check_device(device: Any) -> str:
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise SpecError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return "cuda:0" if device == "cuda" else device


@dataclass(frozen=True)
class Point:
    """One measurement to take: the unit the runner executes and the store keeps."""

    variant: str
    impl: str
    dtype: str
    tokens: int
    hidden: int
    mode: str

    @property
    def shape(self) -> str:
        return f"{self.tokens}x{self.hidden}"

    def describe(self) -> str:
        return f"{self.variant:<11} {self.impl:<8} {self.dtype:<8} {self.shape:>11} {self.mode}"


class LabMethod:
    """What the runner reads from a lab's spec (blocks, models) that the lab does not choose: the kernel sweep's
    options that do not apply to a module timed as a whole, at their fixed values."""

    device: str

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def flush(self) -> str:
        return "zero"

    @property
    def cuda_launch(self) -> str:
        return "queued"

    @property
    def cuda_graph(self) -> bool:
        return False

    @property
    def trace(self) -> bool:
        return False  # a lab's points get their component breakdown instead

    @property
    def save_traces(self) -> bool:
        return False

    @property
    def eps(self) -> float:
        return 1e-5

    @property
    def groups(self) -> int:
        return 32


def check_lab_method(spec: Any) -> None:
    """The method fields a lab's spec shares with a kernel sweep (budgets, rounds, interval target, cache
    state, CPU allocator, pages and placement, label, threads): checked, and normalized in place."""
    set_ = object.__setattr__
    noun = getattr(spec, "_noun", "lab")
    for name in ("warmup_ms", "budget_ms"):
        v = getattr(spec, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 600_000):
            raise SpecError(f"{name} must be a number of milliseconds in (0, 600000], got {v!r}")
        set_(spec, name, float(v))
    if isinstance(spec.rounds, bool) or not isinstance(spec.rounds, int) or not 2 <= spec.rounds <= 100:
        raise SpecError(f"rounds must be 2..100, got {spec.rounds!r}")
    set_(spec, "ci_target_pct", float(spec.ci_target_pct))
    state = spec.cache_state or ("warm" if spec.device == "cpu" else "cold")
    if state not in CACHE_STATES or (spec.device == "cpu" and state == "cold"):
        raise SpecError(f"cache state {state!r}: CPU {noun}s run warm; CUDA {noun}s cold or warm")
    set_(spec, "cache_state", state)
    if spec.cpu_allocator not in CPU_ALLOCATORS:
        raise SpecError(f"unknown CPU allocator mode {spec.cpu_allocator!r}: use reuse or system")
    if spec.cpu_pages not in CPU_PAGES:
        raise SpecError(f"unknown CPU page mode {spec.cpu_pages!r}: use huge or base")
    if spec.cpu_placement not in CPU_PLACEMENTS:
        raise SpecError(f"unknown CPU placement {spec.cpu_placement!r}: use round or fixed")
    if spec.label is not None and (not isinstance(spec.label, str) or len(spec.label) > 200):
        raise SpecError("label must be text of at most 200 characters")
    if spec.threads is not None and (
        isinstance(spec.threads, bool) or not isinstance(spec.threads, int) or spec.threads < 1
    ):
        raise SpecError(f"threads must be a whole number ≥ 1, got {spec.threads!r}")


@dataclass(frozen=True)
class SweepSpec(JsonSpec):
    """A sweep: the cross product of variants, implementations, shapes, dtypes and modes."""

    variants: tuple[str, ...]
    impls: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("fwd",)
    device: str = "cpu"
    threads: int | None = None
    warmup_ms: float = 25.0
    budget_ms: float = 100.0
    cuda_graph: bool = False
    seed: int = 0
    eps: float = 1e-5
    groups: int = 32
    label: str | None = None
    preset: str | None = None
    energy: bool = False
    energy_window_s: float = 1.0
    energy_repeats: int = 3
    trace: bool = False
    save_traces: bool = False
    sample_ms: float | None = 100.0
    # measurement v2: interleaved rounds with paired ratios, cache state, allocator
    rounds: int = 7
    ci_target_pct: float = 3.0
    cache_state: str | None = None  # None: the device's default (CPU warm, CUDA cold)
    flush: str = "zero"
    cuda_launch: str = "queued"
    cpu_allocator: str = "reuse"
    cpu_pages: str = "huge"
    cpu_placement: str = "round"
    processes: int = 1  # CPU: the sweep in this many fresh processes, one after the other, merged into one run
    spread_s: float = 0.0  # with processes: start them this many seconds apart, so one run meets several states
    baseline: str | None = None  # "variant impl"; None: layernorm native when measured, else the first
    ray: str | None = None  # a Ray cluster to spread the groups over: auto, local or an address; None: this machine

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "variants", _check_choices("variant", self.variants, VARIANTS))
        set_(self, "impls", _check_choices("implementation", self.impls, IMPLS))
        if not isinstance(self.dtypes, (list, tuple)) or not self.dtypes:
            raise SpecError(f"dtypes must be a non-empty list: choose from {', '.join(DTYPES)}")
        set_(self, "dtypes", tuple(dict.fromkeys(normalize_dtype(str(d)) for d in self.dtypes)))
        set_(self, "modes", _check_choices("mode", self.modes, MODES))
        if not isinstance(self.shapes, (list, tuple)) or not self.shapes:
            raise SpecError("no shapes: give --shapes TOKENSxHIDDEN,... or --preset NAME")
        set_(
            self,
            "shapes",
            tuple(dict.fromkeys(_check_shape(tuple(s) if isinstance(s, list) else s) for s in self.shapes)),
        )
        set_(self, "device", _check_device(self.device))
        if self.threads is not None and (
            not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1
        ):
            raise SpecError(f"threads must be a whole number ≥ 1, got {self.threads!r}: use e.g. --threads 2")
        for name in ("warmup_ms", "budget_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 600_000):
                raise SpecError(f"{name} must be a number of milliseconds in (0, 600000], got {v!r}")
            set_(self, name, float(v))
        if not isinstance(self.eps, (int, float)) or not (0 < self.eps < 1):
            raise SpecError(f"eps must be in (0, 1), got {self.eps!r}")
        if not isinstance(self.groups, int) or self.groups < 1:
            raise SpecError(f"groups must be a whole number ≥ 1, got {self.groups!r}")
        if self.label is not None and (not isinstance(self.label, str) or len(self.label) > 200):
            raise SpecError("label must be text of at most 200 characters")
        if self.preset is not None and self.preset not in PRESETS:
            raise SpecError(f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise SpecError("--cuda-graph needs a CUDA device: add --device cuda or drop --cuda-graph")
        w = self.energy_window_s
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0.2 <= w <= 60):
            raise SpecError(f"energy window must be 0.2-60 s, got {w!r}: the NVML counter updates every ~100 ms")
        set_(self, "energy_window_s", float(w))
        r = self.energy_repeats
        if isinstance(r, bool) or not isinstance(r, int) or not (1 <= r <= 20):
            raise SpecError(f"energy repeats must be 1-20, got {r!r}")
        if self.sample_ms is not None:
            s = self.sample_ms
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0 <= s <= 10_000):
                raise SpecError(f"sample period must be 0-10000 ms (0 turns sampling off), got {s!r}")
            set_(self, "sample_ms", float(s) if s > 0 else None)
        if self.save_traces and not self.trace:
            set_(self, "trace", True)
        self._check_method()

    def _check_method(self) -> None:
        set_ = object.__setattr__
        r = self.rounds
        if isinstance(r, bool) or not isinstance(r, int) or not (2 <= r <= 100):
            raise SpecError(f"rounds must be a whole number in 2..100, got {r!r}: e.g. --rounds 7 or --rounds accurate")
        t = self.ci_target_pct
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.1 <= t <= 50):
            raise SpecError(f"CI target must be 0.1-50 %, got {t!r}")
        set_(self, "ci_target_pct", float(t))
        state = self.cache_state or ("warm" if self.device == "cpu" else "cold")
        if state not in CACHE_STATES:
            raise SpecError(f"unknown cache state {state!r}: use cold (flushed before each call) or warm")
        if self.device == "cpu" and state == "cold":
            raise SpecError("a cold cache is offered on CUDA only: CPU points run back to back (warm); drop --cache")
        set_(self, "cache_state", state)
        if self.flush not in FLUSH_METHODS:
            raise SpecError(f"unknown flush {self.flush!r}: use one of {', '.join(FLUSH_METHODS)}")
        if self.cuda_launch not in CUDA_LAUNCHES:
            raise SpecError(f"unknown CUDA launch {self.cuda_launch!r}: use one of {', '.join(CUDA_LAUNCHES)}")
        if self.cpu_allocator not in CPU_ALLOCATORS:
            raise SpecError(f"unknown CPU allocator mode {self.cpu_allocator!r}: use reuse or system")
        if self.cpu_pages not in CPU_PAGES:
            raise SpecError(f"unknown CPU page mode {self.cpu_pages!r}: use huge or base")
        if self.cpu_placement not in CPU_PLACEMENTS:
            raise SpecError(f"unknown CPU placement {self.cpu_placement!r}: use round or fixed")
        n = self.processes
        if isinstance(n, bool) or not isinstance(n, int) or not (1 <= n <= 16):
            raise SpecError(f"processes must be a whole number 1-16, got {n!r}: e.g. --processes 3")
        if n > 1 and self.device != "cpu":
            raise SpecError("--processes spreads a CPU run over fresh processes: drop it for a GPU run")
        s = self.spread_s
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0 <= s <= 3600):
            raise SpecError(f"spread must be 0-3600 seconds between process starts, got {s!r}: e.g. --spread-s 30")
        object.__setattr__(self, "spread_s", float(s))
        if s and n < 2:
            raise SpecError("--spread-s spaces a run's processes apart: give --processes 2 or more with it")
        if n > 1 and self.save_traces:
            raise SpecError(
                "--save-traces with --processes: each process writes its traces to a scratch folder that is removed; "
                "drop one of the two"
            )
        self._check_ray()
        if self.baseline is not None:
            parts = self.baseline.split() if isinstance(self.baseline, str) else []
            if len(parts) != 2 or parts[0] not in VARIANTS or parts[1] not in IMPLS:
                raise SpecError(f"baseline must be 'VARIANT IMPL', e.g. 'layernorm native', got {self.baseline!r}")

    def _check_ray(self) -> None:
        r = self.ray
        if r is None:
            return
        if not isinstance(r, str) or not r.strip() or len(r) > 200 or any(c.isspace() for c in r):
            raise SpecError(f"--ray takes auto, local or a cluster address (host:port, ray://host:port), got {r!r}")
        if self.device not in ("cpu", "cuda"):
            raise SpecError(f"with --ray give --device cpu or cuda, not {self.device}: Ray assigns each worker its GPU")
        if self.processes > 1:
            raise SpecError("--processes with --ray: a cluster sweep runs each group once per device; drop one")

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def points(self) -> list[Point]:
        """Points in a stable order: shape-major, so one shape's inputs are reused."""
        return [
            Point(v, i, d, t, h, m)
            for (t, h), d, m, v, i in itertools.product(self.shapes, self.dtypes, self.modes, self.variants, self.impls)
        ]

    def timing_method(self) -> str:
        if self.device_type == "cpu":
            return "cpu_blocks"
        if self.cuda_graph:
            return "cuda_graph"
        if self.cache_state == "warm":
            return "cuda_event_queued"
        return "cuda_event_flush_queued" if self.cuda_launch == "queued" else "cuda_event_flush"

    @classmethod
    def from_dict(cls, d: Any) -> SweepSpec:
        check_fields(cls, d, "sweep spec")
        missing = [k for k in ("variants", "impls", "shapes") if k not in d]
        if missing:
            raise SpecError(f"spec lacks {', '.join(missing)}")
        kw = dict(d)
        kw["shapes"] = (
            tuple(tuple(s) if isinstance(s, list) else s for s in d["shapes"])
            if isinstance(d["shapes"], list)
            else d["shapes"]
        )
        return cls(**kw)


def default_cpu_spec(**overrides: Any) -> SweepSpec:
    """The quick CPU sweep: the three cheapest-to-argue-about variants, two shapes."""
    kw: dict[str, Any] = dict(
        variants=("layernorm", "rmsnorm", "dyt"),
        impls=("eager", "native", "compiled"),
        shapes=((1024, 768), (4096, 4096)),
        dtypes=("float32",),
        modes=("fwd",),
        device="cpu",
        warmup_ms=50.0,
        budget_ms=1000.0,
        rounds=ROUND_PRESETS["quick"][0],
        ci_target_pct=ROUND_PRESETS["quick"][1],
    )
    kw.update(overrides)
    return SweepSpec(**kw)


def default_gpu_spec(**overrides: Any) -> SweepSpec:
    """The GPU sweep: every variant and implementation on Llama-sized shapes in bf16."""
    kw: dict[str, Any] = dict(
        variants=VARIANTS,
        impls=IMPLS,
        shapes=((2048, 4096), (8192, 4096), (32768, 4096), (8192, 8192), (32768, 8192)),
        dtypes=("bfloat16",),
        modes=("fwd", "fwdbwd"),
        device="cuda",
        warmup_ms=25.0,
        budget_ms=100.0,
    )
    kw.update(overrides)
    return SweepSpec(**kw)


def default_spec(device: str, **overrides: Any) -> SweepSpec:
    """The default sweep and method for ``device`` (cpu or cuda[:N]), with ``overrides``."""
    if device == "cpu":
        return default_cpu_spec(**overrides)
    return default_gpu_spec(device=device, **overrides)


@dataclass(frozen=True)
class CalibrationSpec(JsonSpec):
    """The machine's dimensioning experiment (Kalibera & Jones 2013): the same small sweep in ``runs`` fresh
    processes started ``spread_s`` apart, so what differs between runs (the machine's state over minutes, a
    process's memory layout) is measured once per machine, apart from what differs between rounds.

    The shapes are one cache-resident and one memory-resident working set on a CPU, one small and one large on
    a GPU; the candidates are the default CPU sweep's (LayerNorm, RMSNorm and DyT; eager, native and compiled),
    fp32 forward: their ratios to LayerNorm native are what later runs on this machine are widened by, and each
    one's own shift between memory states and slope on copy bandwidth.
    """

    _what: ClassVar[str] = "calibration spec"
    device: str = "cpu"
    runs: int = 12  # where the DRAM rerun interval stopped narrowing on the 2-core VM, in about 4 minutes
    spread_s: float = 20.0
    shapes: tuple[tuple[int, int], ...] = ()  # () : the device's default pair
    rounds: int = 7
    warmup_ms: float = 20.0
    budget_ms: float = 40.0
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _check_device(self.device))
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or not (3 <= self.runs <= 16):
            raise SpecError(f"calibration runs must be a whole number 3-16, got {self.runs!r}: e.g. --runs 12")
        if self.device != "cpu":
            raise SpecError("calibration runs its sweep in fresh processes, which the CPU path does: use --device cpu")
        shapes = tuple(tuple(s) for s in self.shapes) or CALIBRATION_SHAPES[self.device.split(":")[0]]
        object.__setattr__(self, "shapes", shapes)
        self.sweep()  # every other field is checked as the sweep it runs

    def sweep(self) -> SweepSpec:
        """The sweep each of the runs times."""
        return SweepSpec(
            variants=("layernorm", "rmsnorm", "dyt"),
            impls=("eager", "native", "compiled"),
            shapes=self.shapes,
            device=self.device,
            rounds=self.rounds,
            ci_target_pct=50.0,  # the rounds asked for, no more: the spread between runs is the measurement
            warmup_ms=self.warmup_ms,
            budget_ms=self.budget_ms,
            processes=self.runs,
            spread_s=self.spread_s,
            sample_ms=None,
            label=self.label,
        )


# a cache-resident and a memory-resident working set per device kind (in + out, fp32)
CALIBRATION_SHAPES: dict[str, tuple[tuple[int, int], ...]] = {"cpu": ((256, 1024), (4096, 4096))}
