"""Workers as the dashboard starts them: a separate process, followed through the store, cancelled by signal."""

import time

import pytest

from profilers import jobs
from profilers.jobs import device_busy
from profilers.spec import SweepSpec, default_cpu_spec
from profilers.store import Store

LONG = SweepSpec(
    variants=("layernorm", "rmsnorm", "dyt"),
    impls=("eager", "native"),
    shapes=((64, 256), (128, 256), (256, 256), (512, 256)),
    modes=("fwd", "fwdbwd"),
    budget_ms=200,
)


def _wait(db, pid, points, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with Store(db) as s:
            run = jobs.run_of(s, pid)
        if run and run["points_done"] >= points:
            return run
        time.sleep(0.2)
    raise AssertionError("the worker made no progress")


def test_estimate_grows_with_the_sweep():
    small = default_cpu_spec(shapes=((64, 256),))
    assert 0 < jobs.estimate_seconds(small) < jobs.estimate_seconds(default_cpu_spec())
    assert jobs.estimate_seconds(default_cpu_spec(energy=True)) > jobs.estimate_seconds(default_cpu_spec())


@pytest.mark.slow  # a dashboard worker's sweep run and cancelled
def test_worker_runs_apart_holds_the_device_and_cancels_cleanly(tmp_path):
    db = tmp_path / "results.db"
    job = jobs.start(LONG, db)
    run = _wait(db, job.pid, 2)
    assert run["status"] == "running" and run["pid"] == job.pid
    assert device_busy(db, "cpu")["pid"] == job.pid  # a second sweep on cpu would be refused
    with Store(db) as s:
        assert [r["id"] for r in jobs.active_runs(s)] == [run["id"]]
    assert jobs.cancel(run)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        with Store(db) as s:
            final = s.get_run(run["id"])
        if final["status"] != "running":
            break
        time.sleep(0.2)
    assert final["status"] == "cancelled" and final["points_done"] >= 2
    end = time.monotonic() + 30  # the worker prints its last line just after the store says cancelled
    while "cancelled" not in jobs.log_tail(job.log_path, 3) and time.monotonic() < end:
        time.sleep(0.2)
    assert "cancelled" in jobs.log_tail(job.log_path, 3)
    assert device_busy(db, "cpu") is None


def test_a_second_sweep_on_a_busy_device_is_refused(tmp_path):
    from conftest import run_cli

    db = tmp_path / "results.db"
    job = jobs.start(LONG, db)
    _wait(db, job.pid, 1)
    p = run_cli("run", "--shapes", "8x64", "--variants", "rmsnorm", "--impls", "native", db=db)
    assert p.returncode == 2 and "busy" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    with Store(db) as s:
        run = jobs.run_of(s, job.pid)
        assert len(s.list_runs()) == 1
    jobs.cancel(run)
