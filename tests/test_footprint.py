"""The memory estimate against measured resident-set peaks, and the points it keeps off a small machine."""

import json
import os
import resource

import pytest
import torch
from conftest import run_cli

from profilers.analysis.footprint import point_bytes
from profilers.catalog import Config
from profilers.measure.memory import set_cpu_allocator
from profilers.measure.point import Context, measure_point
from profilers.measure.timing import CpuTimer
from profilers.spec import PRESETS, SweepSpec, default_cpu_spec
from profilers.store import Store


def _run(p):
    spec = SweepSpec(
        variants=(p.variant,), impls=(p.impl,), shapes=((p.tokens, p.hidden),), dtypes=(p.dtype,), modes=(p.mode,)
    )
    ctx = Context(spec, torch.device("cpu"), Config(), CpuTimer(0.1, 0.5, min_samples=1), copy_gbps=10.0)
    return measure_point(p, ctx)


def _peak_in_child(p) -> dict:
    """Resident-set growth of one point, in a forked child (the parent's heap is not disturbed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = _run(p)
        top = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(w, json.dumps({"status": res.status, "peak": (top - base) * 1024}).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.waitpid(pid, 0)
    return json.loads(data)


def test_estimate_is_at_least_the_measured_peak_on_the_default_sweep_and_bert_preset():
    set_cpu_allocator("reuse")  # the default mode, in which freed memory stays resident
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP pool across fork
    try:
        for impl in ("eager", "native", "compiled"):  # load kernels and the compiler before measuring
            _run(default_cpu_spec(shapes=((8, 64),), impls=(impl,), variants=("layernorm",)).points()[0])
        bert = tuple(PRESETS["bert-base"].shapes())
        points = (
            default_cpu_spec().points()
            + default_cpu_spec(shapes=bert).points()
            + default_cpu_spec(shapes=((4096, 768),), impls=("eager", "native"), modes=("fwdbwd",)).points()
        )
        rows = []
        for p in points:
            got = _peak_in_child(p)
            if got["status"] == "skipped":
                continue
            est = point_bytes(p.variant, p.impl, p.mode, p.dtype, p.tokens, p.hidden)
            rows.append((p.describe(), got["peak"], est))
    finally:
        torch.set_num_threads(threads)
    for name, peak, est in rows:
        print(f"{name}: peak {peak / 2**20:7.0f} MiB, estimate {est / 2**20:7.0f} MiB, ratio {est / peak:5.2f}")
    low = [(n, e / pk) for n, pk, e in rows if e < pk]
    assert not low, low
    assert len(rows) >= 40


def test_a_point_over_a_lowered_memory_limit_is_skipped_with_its_reason(tmp_path):
    db = tmp_path / "m.db"
    env = {"NORMSCOPE_MEMORY_LIMIT_GIB": "0.5"}
    args = ["run", "--shapes", "64x256,4096x4096", "--variants", "rmsnorm", "--impls", "native", "--budget-ms", "5"]
    p = run_cli(*args, "--rounds", "2", db=db, env=env)
    assert p.returncode == 0, p.stderr
    with Store(db) as s:
        small, big = s.points(s.list_runs()[0]["id"])
    assert small["status"] != "skipped"
    assert (
        big["status"] == "skipped" and "does not fit" in big["error"] and "NORMSCOPE_MEMORY_LIMIT_GIB" in big["error"]
    )


def test_a_sweep_where_nothing_fits_is_refused_in_one_line(tmp_path):
    p = run_cli(
        "run",
        "--shapes",
        "4096x4096",
        "--variants",
        "rmsnorm",
        db=tmp_path / "n.db",
        env={"NORMSCOPE_MEMORY_LIMIT_GIB": "0.1"},
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no point of this sweep fits" in p.stderr
    assert not (tmp_path / "n.db").exists()


@pytest.mark.parametrize("variant", ["layernorm", "add_rmsnorm"])
def test_training_needs_more_than_inference(variant):
    assert point_bytes(variant, "eager", "fwdbwd", "float32", 1024, 1024) > point_bytes(
        variant, "eager", "fwd", "float32", 1024, 1024
    )
