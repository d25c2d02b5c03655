"""The memory estimate against measured resident-set peaks, and the points it keeps off a small machine."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

from profilers.analysis.footprint import point_bytes
from profilers.spec import PRESETS, Point, default_cpu_spec
from profilers.store import Store


@pytest.mark.slow
def test_estimate_is_at_least_the_measured_peak_on_the_default_sweep_and_bert_preset():
    bert = tuple(PRESETS["bert-base"].shapes())
    points = (
        default_cpu_spec().points()
        + default_cpu_spec(shapes=bert).points()
        + default_cpu_spec(shapes=((4096, 768),), impls=("eager", "native"), modes=("fwdbwd",)).points()
    )
    p = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "footprint_peaks.py")],
        input=json.dumps([dataclasses.asdict(pt) for pt in points]),
        cwd=ROOT / "tests",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = []
    for line in p.stdout.splitlines():
        got = json.loads(line)
        if got["status"] == "skipped":
            continue
        pt = Point(**got["point"])
        est = point_bytes(pt.variant, pt.impl, pt.mode, pt.dtype, pt.tokens, pt.hidden)
        rows.append((pt.describe(), got["peak"], est))
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
