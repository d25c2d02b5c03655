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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

FALLBACK = "compile fell back to eager"


class CompileFallback(RuntimeError):
    """The compiled callable ran (partly) eager."""


def _dynamo():
    import torch._inductor.config as inductor_config

    # compile in this process: a pool of compile workers would keep competing
    # with the kernels being timed (it stays alive after the compile)
    inductor_config.compile_threads = 1
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


def compile_fresh(fn: Callable[..., Any]) -> Compiled:
    """Compile ``fn`` with a clean dynamo cache: nothing reused across shapes or dtypes."""
    dynamo, _ = _dynamo()
    dynamo.reset()
    return Compiled(torch.compile(fn, fullgraph=True, dynamic=False))


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
