"""Resident-set peaks of sweep points, each in a forked child of this fresh process (run by test_footprint).

A fresh interpreter set to one thread before any op: a child forked from a process whose OpenMP pool ever had
more threads (as pytest's has, after other tests) can hang in that pool. The compiler compiles in-process for the
same reason: a child forked after its worker pool started waits forever on workers it does not have. Reads the
points as JSON on stdin, writes one JSON object per point on stdout; a child that has not answered in
CHILD_TIMEOUT_S is killed and reported, so a hang fails in minutes with its point named.
"""

import json
import os
import resource
import select
import signal
import sys

os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # before torch is imported: no compile worker pool to fork

import torch

torch.set_num_threads(1)

from conftest import measure_one  # noqa: E402

from profilers.catalog import Config  # noqa: E402
from profilers.measure.instruments.memory import set_cpu_allocator  # noqa: E402
from profilers.measure.instruments.timing import CpuTimer  # noqa: E402
from profilers.measure.sweep.point import Context  # noqa: E402
from profilers.spec import Point, SweepSpec, default_cpu_spec  # noqa: E402


def run(p: Point):
    spec = SweepSpec(
        variants=(p.variant,), impls=(p.impl,), shapes=((p.tokens, p.hidden),), dtypes=(p.dtype,), modes=(p.mode,)
    )
    ctx = Context(spec, torch.device("cpu"), Config(), CpuTimer(0.1, 0.5, min_samples=1), copy_gbps=10.0)
    return measure_one(p, ctx)


def start_child(p: Point) -> tuple[int, int]:
    """Fork a child that measures one point and writes its resident-set growth to a pipe: (pid, read end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = run(p)
        top = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(w, json.dumps({"status": res.status, "peak": (top - base) * 1024}).encode())
        os._exit(0)
    os.close(w)
    return pid, r


CHILD_TIMEOUT_S = 240.0


def collect(pid: int, r: int) -> dict:
    ready, _, _ = select.select([r], [], [], CHILD_TIMEOUT_S)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        raise SystemExit(f"a child gave no answer in {CHILD_TIMEOUT_S:.0f} s: killed")
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def main() -> None:
    set_cpu_allocator("reuse")  # the default mode, in which freed memory stays resident
    for impl in ("eager", "native", "compiled"):  # load kernels and the compiler before measuring
        run(default_cpu_spec(shapes=((8, 64),), impls=(impl,), variants=("layernorm",)).points()[0])
    points = json.load(sys.stdin)
    at_once = int(os.environ.get("FOOTPRINT_CHILDREN", "2"))  # each child's peak is its own: they may overlap
    for i in range(0, len(points), at_once):
        batch = points[i : i + at_once]
        children = [start_child(Point(**d)) for d in batch]
        for d, (pid, r) in zip(batch, children):
            try:
                got = collect(pid, r)
            except SystemExit as e:
                raise SystemExit(f"{e} ({Point(**d).describe()})") from None
            print(json.dumps({**got, "point": d}), flush=True)


if __name__ == "__main__":
    main()
