"""The one place that calls torch.compile, and the check that it really compiled.

torch.compile can quietly run eager code: a graph break splits the function, the
recompile limit sends later shapes to eager, and ``suppress_errors`` hides
failures. A "compiled" row that secretly ran eager is worse than no row, so every
compiled point is compiled fresh for its shape, dtype and mode, watched through
dynamo's counters, and failed with "compile fell back to eager" when the counters
show that any frame ran uncompiled.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

FALLBACK = "compile fell back to eager"


class CompileFallback(RuntimeError):
    """The compiled callable ran (partly) eager."""


def configure(device_type: str) -> str:
    """Compile workers for the device; returns what was set, for the run's provenance.

    CUDA: inductor's pool of compile workers (dozens of Triton kernels compile in parallel); they are shut
    down by ``quiesce`` before anything is timed. CPU: compile in this process (on a 2-core machine a pool
    costs more to start than it saves, and it would compete with the kernels being timed).
    """
    import torch._inductor.config as inductor_config

    if device_type == "cpu":
        inductor_config.compile_threads = 1
    return f"compile_threads={inductor_config.compile_threads}"


def quiesce() -> str | None:
    """Shut down inductor's compile workers so they cannot compete with timing; None when there is no call."""
    try:
        from torch._inductor.async_compile import shutdown_compile_workers
    except ImportError:
        return "this torch has no shutdown_compile_workers: compile workers may still be alive"
    shutdown_compile_workers()
    return None


def _dynamo():
    import torch._dynamo
    from torch._dynamo.utils import counters

    return torch._dynamo, counters


def _snapshot() -> dict[str, int]:
    _, counters = _dynamo()
    return {
        "frames_total": counters["frames"]["total"],
        "frames_ok": counters["frames"]["ok"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "unique_graphs": counters["stats"]["unique_graphs"],
        "cache_hits": counters["inductor"]["fxgraph_cache_hit"],
        "limit_hits": sum(n for k, n in counters["unimplemented"].items() if "recompile limit" in k.lower()),
    }


@dataclass
class CompileWatch:
    """Counter deltas over a region; ``problem()`` names a fallback or returns None."""

    before: dict[str, int] = field(default_factory=_snapshot)
    after: dict[str, int] | None = None

    def delta(self) -> dict[str, int]:
        after = self.after if self.after is not None else _snapshot()
        return {k: after[k] - self.before[k] for k in self.before}

    def problem(self, expect_new_graph: bool) -> str | None:
        d = self.delta()
        if d["limit_hits"] > 0:
            return f"{FALLBACK}: dynamo hit its recompile limit"
        if d["graph_breaks"] > 0:
            return f"{FALLBACK}: {d['graph_breaks']} graph break(s)"
        if d["frames_total"] > d["frames_ok"]:
            return f"{FALLBACK}: {d['frames_total'] - d['frames_ok']} frame(s) not compiled"
        if expect_new_graph and d["unique_graphs"] < 1:
            return f"{FALLBACK}: no graph was compiled"
        return None


def _patch(config: Any, **settings: Any) -> Any:
    """config.patch with the settings this torch knows (older releases lack some, e.g. the limit switch)."""
    return config.patch(**{k: v for k, v in settings.items() if hasattr(config, k)})


def _translate(exc: BaseException) -> CompileFallback | None:
    """Dynamo's own refusals (graph break under fullgraph, limit hit) as a fallback."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"Unsupported", "FailOnRecompileLimitHit", "RecompileLimitExceeded", "RecompileError"}:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CompileFallback(f"{FALLBACK}: {first}")
    return None


@dataclass
class Compiled:
    """A freshly compiled callable (its compile time is measured by ``first_calls``)."""

    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


_fresh = itertools.count()


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` behind a wrapper with a code object of its own.

    Dynamo caches compiled graphs per code object; every ``functools.partial`` of one formula shares one,
    so compiles for different shapes would pile up in one cache (and reach the recompile limit), and
    resetting dynamo to avoid that would throw away the other candidates of a group, timed side by side.
    A fresh code object per compile keeps each compiled point's cache to itself.
    """
    namespace = {"fn": fn}
    source = "def call(*args):\n    return fn(*args)\n"
    exec(compile(source, f"<compiled point {next(_fresh)}>", "exec"), namespace)
    return namespace["call"]


def compile_fresh(fn: Callable[..., Any]) -> Compiled:
    """Compile ``fn`` fresh: its own dynamo cache entry, nothing reused across shapes, dtypes or modes."""
    _dynamo()
    return Compiled(torch.compile(_own_code(fn), fullgraph=True, dynamic=False))


def reset() -> None:
    """Drop every compiled graph (between groups: the finished group's compiled points are done). Where dynamo
    was never imported nothing was compiled, and importing it (1-2 s) only to reset it is skipped."""
    if "torch._dynamo" not in sys.modules:
        return
    dynamo, _ = _dynamo()
    dynamo.reset()


@contextlib.contextmanager
def first_calls(retain_graph: bool = False) -> Iterator[dict[str, float]]:
    """Wrap the first (compiling) calls: time them and raise CompileFallback on any fallback.

    ``retain_graph``: backward will be called repeatedly on one graph (mode bwd),
    which AOTAutograd's donated buffers forbid, so they are turned off.
    """
    import torch._functorch.config as functorch_config

    dynamo, _ = _dynamo()
    timing: dict[str, float] = {}
    watch = CompileWatch()
    t0 = time.perf_counter()
    try:
        with (
            _patch(dynamo.config, fail_on_recompile_limit_hit=True),
            _patch(functorch_config, donated_buffer=not retain_graph),
        ):
            yield timing
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None
    timing["compile_s"] = time.perf_counter() - t0
    problem = watch.problem(expect_new_graph=True)
    if problem:
        raise CompileFallback(problem)
    timing["cache_hits"] = watch.delta()["cache_hits"]


@contextlib.contextmanager
def steady_state() -> Iterator[None]:
    """Timed calls of a compiled point must not recompile; if one does, it fails the point."""
    dynamo, _ = _dynamo()
    watch = CompileWatch()
    try:
        with _patch(dynamo.config, error_on_recompile=True, fail_on_recompile_limit_hit=True):
            yield
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from None
    problem = watch.problem(expect_new_graph=False)
    if problem:
        raise CompileFallback(problem)


# aten ops that allocate, view or fill without computing: allowed outside a compiled graph
_NON_COMPUTE = (
    "aten::empty",
    "aten::empty_strided",
    "aten::empty_like",
    "aten::zeros",
    "aten::zeros_like",
    "aten::ones",
    "aten::ones_like",
    "aten::full",
    "aten::fill_",
    "aten::zero_",
    "aten::detach",
    "aten::alias",
    "aten::view",
    "aten::reshape",
    "aten::as_strided",
    "aten::expand",
    "aten::t",
    "aten::resize_",
    "aten::lift_fresh",
)
COMPILED_MARKERS = ("## Call CompiledFxGraph", "Torch-Compiled Region", "CompiledFunction")


def _inside_compiled(e: Any) -> bool:
    p = e.cpu_parent
    while p is not None:
        if p.name.startswith(COMPILED_MARKERS):
            return True
        p = p.cpu_parent
    return False


def eager_ops_outside_graph(events: list[Any]) -> tuple[bool, list[str]]:
    """(a compiled graph ran, the compute aten ops that ran outside any compiled graph) in profiler events."""
    ran_graph = any(e.name.startswith("## Call CompiledFxGraph") for e in events)
    eager = sorted(
        {
            e.name
            for e in events
            if e.name.startswith("aten::")
            and not e.name.startswith(_NON_COMPUTE)
            and not _inside_compiled(e)
            and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))
        }
    )
    return ran_graph, eager


def verify_compiled(call: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> None:
    """The positive check: one profiled steady-state call must run the compiled graph and no eager compute op.

    Dynamo's counters say nothing fell back while compiling; this says the timed call itself is compiled
    code. Raises CompileFallback otherwise.
    """
    from .kernels import quiet_profile

    with quiet_profile() as prof:
        call()
        sync()
    ran_graph, eager = eager_ops_outside_graph(list(prof.events()))
    if not ran_graph:
        raise CompileFallback(f"{FALLBACK}: a profiled call ran no compiled graph")
    if eager:
        raise CompileFallback(f"{FALLBACK}: a profiled call ran eager ops outside the graph ({', '.join(eager[:5])})")
