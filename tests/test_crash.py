"""A sweep killed, interrupted or cancelled leaves an intact store with its finished points."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from profilers.catalog import TIMED_STATUSES as TIMED
from profilers.store import Store

LONG = [
    "--shapes",
    "64x256,128x256,256x256",
    "--variants",
    "layernorm,rmsnorm,dyt,layerscale",
    "--impls",
    "eager,native",
    "--modes",
    "fwd,fwdbwd",
    "--budget-ms",
    "150",
    "--warmup-ms",
    "5",
]


def _start(db):
    env = dict(os.environ, NORMSCOPE_DB=str(db))
    return subprocess.Popen(
        [sys.executable, "-m", "profilers", "run", *LONG],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_points(db, n, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read()
        if db.exists():
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                count = con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
                con.close()
                if count >= n:
                    return count
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    raise AssertionError("sweep made no progress")


def test_sigkill_mid_sweep_leaves_intact_store_marked_interrupted(db):
    proc = _start(db)
    _wait_for_points(db, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Store(db) as s:
        (run,) = s.list_runs()
        assert run["status"] == "interrupted"
        assert 3 <= run["points_done"] < run["points_planned"]
        assert all(p["status"] in TIMED and p["p50_us"] > 0 for p in s.points(run["id"]) if p["status"] != "skipped")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_ctrl_c_or_term_cancels_and_keeps_finished_points(db, sig):
    proc = _start(db)
    _wait_for_points(db, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    with Store(db) as s:
        (run,) = s.list_runs()
        assert run["status"] == "cancelled"
        assert run["points_done"] >= 2 and run["finished_at"]
