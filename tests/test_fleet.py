"""A sweep over a Ray cluster: a real local cluster of three CPU-only nodes on 127.0.0.1, the CLI as a user runs
it, checked against the same sweep run locally; a worker killed mid-group (retried once, then failed with the
reason, never stored twice); a cancel that stops every worker."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

ray = pytest.importorskip("ray")

SWEEP = ["--variants", "rmsnorm,layernorm", "--impls", "native,liger", "--warmup-ms", "2", "--rounds", "2"]
TIMED = {"ok", "imprecise", "unstable"}


@pytest.fixture(scope="module")
def cluster():
    """Three CPU-only nodes on this host (one CPU each), shut down after the module."""
    from ray.cluster_utils import Cluster

    small = 100 * 2**20  # a small object store: a container's /dev/shm may be 64 MiB (Ray then uses /tmp)
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": small},
    )
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=small)
    c.wait_for_nodes(timeout=120)
    yield c
    c.shutdown()


def identity(p: dict) -> tuple:
    """What must agree between a cluster sweep and a local one: the point, and whether it was timed."""
    status = "timed" if p["status"] in TIMED else p["status"]
    return (p["seq"], p["variant"], p["impl"], p["tokens"], p["hidden"], p["dtype"], p["mode"], status)


def fleet_runs(where: str) -> tuple[list[dict], list[dict]]:
    from profilers.store import Store

    with Store(where, readonly=True) as s:
        runs = [s.get_run(r["id"]) for r in s.list_runs() if (r.get("extra") or {}).get("fleet")]
        return runs, s.points([r["id"] for r in runs])


@pytest.mark.slow  # a three-node Ray cluster on this host
def test_cluster_sweep_stores_one_run_per_device_with_the_local_sweeps_points(cluster, pg_url, tmp_path):
    shapes = ["--shapes", "64x64,128x64,256x64", "--budget-ms", "5"]
    from profilers.store import Store

    Store(pg_url, migrate=True).close()
    p = run_cli("run", *SWEEP, *shapes, "--ray", cluster.address, "--json", db=pg_url, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["status"] == "completed" and doc["retried"] == [] and doc["lost"] == []
    runs, points = fleet_runs(pg_url)
    assert len(runs) == 3 and {r["status"] for r in runs} == {"completed"}
    fleets = [r["extra"]["fleet"] for r in runs]
    assert len({f["uid"] for f in fleets}) == 1 and sorted(f["slot"] for f in fleets) == [0, 1, 2]
    assert len({f["node_id"] for f in fleets}) == 3  # every node of the cluster measured
    with Store(pg_url, readonly=True) as s:
        record = s.artifact(runs[0]["id"], "fleet")
    assert sorted(g for d in record["devices"] for g in d["groups"]) == [0, 1, 2]
    assert {d["run_id"] for d in record["devices"]} == {r["id"] for r in runs}
    # each group on one device: a ratio never pairs points of two devices
    for shape in ((64, 64), (128, 64), (256, 64)):
        assert len({q["run_id"] for q in points if (q["tokens"], q["hidden"]) == shape}) == 1

    local = tmp_path / "local.db"
    p = run_cli("run", *SWEEP, *shapes, db=local, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    with Store(local, readonly=True) as s:
        here = s.points(1)
    assert sorted(map(identity, points)) == sorted(map(identity, here))
    assert Counter(q["status"] for q in points)["skipped"] == 6  # liger is CUDA only, skipped with its reason
    assert all("cuda" in q["error"] for q in points if q["status"] == "skipped")


def _lease_holder(db: Path, like: str) -> tuple[int, str] | None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5) as con:
            row = con.execute("SELECT pid, purpose FROM leases WHERE purpose LIKE ?", (like,)).fetchone()
    except sqlite3.Error:
        return None
    return (int(row[0]), row[1]) if row else None


def _kill_holder(db: Path, like: str, proc: subprocess.Popen, timeout: float = 240) -> str:
    """SIGKILL the worker that holds a lease whose purpose matches ``like``; its purpose back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        got = _lease_holder(db, like)
        if got:
            os.kill(got[0], signal.SIGKILL)
            return got[1]
        time.sleep(0.05)
    raise AssertionError(f"no worker held a lease like {like!r} (sweep exit {proc.poll()})")


def _start(db: Path, address: str, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    cmd = [sys.executable, "-m", "profilers", "run", *SWEEP, "--ray", address, "--db", str(db), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # a three-node Ray cluster on this host
def test_a_killed_worker_s_group_is_retried_once_then_failed_with_the_reason_never_stored_twice(cluster, tmp_path):
    db = tmp_path / "fleet.db"
    shapes = "64x64,128x64,256x64,512x64"
    proc = _start(db, cluster.address, "--shapes", shapes, "--budget-ms", "60")
    first = _kill_holder(db, "%group%", proc)  # a worker timing a group: killed
    group = first.split("group ")[1].split(" of")[0]
    second = _kill_holder(db, f"%group {group} of%(retry 1)%", proc)  # the same group on another device: killed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert f"group {group} retried on another device: the worker process died" in err
    assert f"group {group} not measured: its worker was lost 2 time(s)" in err
    assert "(retry 1)" in second

    runs, points = fleet_runs(str(db))
    assert sorted(r["status"] for r in runs) == ["completed", "interrupted", "interrupted"]
    assert all("its worker was lost" in r["error"] for r in runs if r["status"] == "interrupted")
    seqs = [q["seq"] for q in points]
    assert sorted(seqs) == list(range(16))  # every point once: nothing lost, nothing twice
    lost = [q for q in points if q["tokens"] == [64, 128, 256, 512][int(group) - 1]]
    assert len(lost) == 4 and {q["status"] for q in lost} == {"failed"}
    assert all("its worker was lost 2 time(s)" in q["error"] for q in lost)
    others = [q for q in points if q not in lost]
    assert {q["status"] for q in others} <= TIMED | {"skipped"}
    from profilers.store import Store

    with Store(db, readonly=True) as s:
        record = s.artifact(runs[0]["id"], "fleet")
        assert s.query("SELECT * FROM leases") == []  # the dead workers' leases are gone
    assert [r["group"] + 1 for r in record["retried"]] == [int(group)]
    assert [r["group"] + 1 for r in record["lost"]] == [int(group)]


@pytest.mark.slow  # a three-node Ray cluster on this host
def test_a_cancel_of_one_device_s_run_stops_every_worker_and_ends_every_run_cancelled(cluster, tmp_path):
    from profilers import jobs
    from profilers.store import Store

    db = tmp_path / "fleet.db"
    proc = _start(db, cluster.address, "--shapes", "64x64,128x64,256x64", "--budget-ms", "60")
    deadline = time.monotonic() + 240
    while _lease_holder(db, "%group%") is None:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
        time.sleep(0.05)
    with Store(db, readonly=True) as s:
        one = jobs.run_of(s, proc.pid)  # the Run page follows its worker (the driver) to its devices' runs
    assert one is not None and jobs.fleet_of(one)["driver_pid"] == proc.pid
    assert jobs.cancel(one)  # the dashboard's Cancel on one device's run: the driver is signalled, not the device
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    runs, _ = fleet_runs(str(db))
    assert runs and {r["status"] for r in runs} == {"cancelled"}
    pids = [r["pid"] for r in runs]
    time.sleep(1.0)
    for pid in pids:  # the workers are gone with the sweep
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _line(proc: subprocess.Popen, wanted: str, timeout: float) -> None:
    """Read the process's stdout until a line ``wanted`` (an AssertionError with its stderr past ``timeout``)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            line = proc.stdout.readline()
            if line.strip() == wanted:
                return
            if not line:  # the driver ended before it waited
                break
    proc.kill()
    raise AssertionError(f"the driver never printed {wanted!r}: {proc.communicate()[1][-2000:]}")


@pytest.mark.soak
def test_twenty_signals_inside_ray_wait_each_end_the_sweep_cancelled_with_exit_130(cluster, tmp_path):
    """The cancel's signal lands while the driver is inside ray.wait (Ray's C code, which checks signals itself):
    SIGTERM (the dashboard's Cancel) and SIGINT (Ctrl-C) by turns, 20 times, each a fresh driver. Each must end
    the sweep cancelled: exit 130, no traceback, every device's run cancelled, the group finished before kept.
    The workers time nothing (``fleet_cancel_driver.py``): what is tested is the driver's cancel."""
    from profilers.store import Store

    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    driver = str(ROOT / "tests" / "fleet_cancel_driver.py")
    for i in range(20):
        sig = signal.SIGTERM if i % 2 == 0 else signal.SIGINT
        db = tmp_path / f"cancel{i}.db"
        cmd = [sys.executable, driver, "run", *SWEEP, "--shapes", "64x64,128x64,256x64", "--ray", cluster.address]
        proc = subprocess.Popen(
            [*cmd, "--db", str(db)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _line(proc, "waiting", timeout=120)  # group 1 is stored and the driver has entered ray.wait again
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (i, sig.name, err[-2000:])
        assert "Traceback" not in err and "SystemError" not in err, err[-2000:]
        assert f"{sig.name} landed inside ray.wait" in out, (i, out)
        assert "cluster sweep cancelled" in err
        runs, points = fleet_runs(str(db))
        assert len(runs) == 3 and {r["status"] for r in runs} == {"cancelled"}, [(r["id"], r["status"]) for r in runs]
        assert all(r["error"] == "cancelled by the user" for r in runs)
        assert len(points) == 4 and len({(q["tokens"], q["hidden"]) for q in points}) == 1  # the finished group's
        with Store(db, readonly=True) as s:
            assert s.query("SELECT * FROM leases") == []


@pytest.mark.slow  # a three-node Ray cluster on this host
def test_the_dashboard_lists_the_cluster_and_starts_a_sweep_on_it(cluster, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from profilers import jobs
    from profilers.store import Store

    db = tmp_path / "dash.db"
    monkeypatch.setenv("NORMSCOPE_DB", str(db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(tmp_path / "none"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/hardware.py").run()
    box = next(t for t in at.text_input if t.label == "Cluster address")
    box.set_value(cluster.address).run()
    at.button(key="cluster-nodes").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "GPU kind" in d.value.columns)
    assert len(table) == 3 and set(table["alive"]) == {"yes"} and list(table["CPUs"]) == [1, 1, 1]
    assert any("a CPU sweep gets 3 device(s)" in c.value for c in at.caption)

    at.switch_page("pages/run.py").run()
    next(r for r in at.radio if r.label == "Where").set_value("Ray cluster").run()
    next(t for t in at.text_input if t.label == "Cluster address").set_value(cluster.address).run()
    next(r for r in at.radio if r.label == "Shapes from").set_value("custom shapes").run()
    next(t for t in at.text_input if t.label.startswith("Shapes")).set_value("64x64,128x64").run()
    next(m for m in at.multiselect if m.label == "Variants").set_value(["rmsnorm", "layernorm"]).run()
    next(m for m in at.multiselect if m.label == "Implementations").set_value(["native"]).run()
    next(n for n in at.number_input if n.label.startswith("Budget")).set_value(5).run()
    assert any("2 group(s)" in m.value and "on one device" in m.value for m in at.markdown)
    assert not any(n.label == "Processes" for n in at.number_input)  # one process per device on a cluster
    at.button(key="start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    pid = at.session_state["last_job_pid"]
    deadline = time.monotonic() + 240
    while True:
        with Store(db, readonly=True) as s:
            runs = jobs.fleet_runs_of(s, pid)
        if runs and all(r["status"] != "running" for r in runs) and len(runs) == 3:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.5)
    assert {r["status"] for r in runs} == {"completed"}
    assert sum(r["points_done"] for r in runs) == 4


def test_cluster_flags_refused_in_one_line(tmp_path):
    db = tmp_path / "x.db"
    p = run_cli("run", "--ray", "auto", "--processes", "2", db=db)
    assert p.returncode == 2 and "--processes with --ray" in p.stderr
    p = run_cli("run", "--ray", "auto", "--device", "cuda:1", db=db)
    assert p.returncode == 2 and "give --device cpu or cuda" in p.stderr
    p = run_cli("run", "--ray", "127.0.0.1:1", "--shapes", "64x64", db=db, timeout=120)
    assert p.returncode == 2 and "cannot join a Ray cluster at 127.0.0.1:1" in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1
    assert not db.exists() or run_cli("runs", db=db).stdout.count("\n") <= 1


@pytest.mark.slow  # a three-node Ray cluster on this host
def test_a_training_grid_on_the_cluster_resumes_after_its_driver_is_killed(cluster, tmp_path):
    """The stability grid's cells as Ray tasks: the driver killed after a few cells, the same command again
    carries them over and trains the rest on the cluster; every cell stored once, as a local grid stores it."""
    import torch
    from training_seed import tiny_spec, write_corpus

    from profilers.labs.training import measure as T
    from profilers.labs.training.spec import Cell
    from profilers.store import Store, StoreError

    spec = tiny_spec(write_corpus(tmp_path / "corpus"), steps=40, seeds=(0, 1))
    spec_file = tmp_path / "grid.json"
    spec_file.write_text(spec.to_json())
    db = tmp_path / "grid.db"
    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    args = ["training", "run", "--spec", str(spec_file), "--ray", cluster.address]
    cmd = [sys.executable, "-m", "profilers", *args, "--db", str(db)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    done: dict = {}
    while len(done) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
        time.sleep(0.2)
        try:
            with Store(db, readonly=True) as s:
                runs = s.list_runs(kind="training")
                done = s.artifacts(runs[0]["id"], T.ARTIFACT_PREFIX) if runs else {}
        except StoreError:
            pass  # not created yet
    proc.kill()
    proc.wait(timeout=30)
    with Store(db) as s:
        (killed,) = s.list_runs(kind="training")
        kept = s.artifacts(killed["id"], T.ARTIFACT_PREFIX)
    assert killed["status"] == "interrupted" and 3 <= len(kept) < len(spec.cells())

    p = run_cli(*args, db=db, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming the grid of run {killed['id']}" in p.stderr
    with Store(db, readonly=True) as s:
        new = s.list_runs(kind="training")[0]
        cells = s.artifacts(new["id"], T.ARTIFACT_PREFIX)
        run = s.get_run(new["id"])
    assert run["status"] == "completed" and run["extra"]["resumed_from"] == killed["id"]
    assert run["extra"]["ray"]["address"] == cluster.address and len(run["extra"]["ray"]["nodes"]) == 3
    assert set(cells) == {T.ARTIFACT_PREFIX + c.key for c in spec.cells()}  # every cell, once
    assert all(cells[name] == doc for name, doc in kept.items())  # carried over as they were
    assert len({doc["ray_node"] for doc in cells.values()}) >= 2  # spread over the cluster's nodes
    assert {doc["energy_reason"] for doc in cells.values() if "energy_reason" in doc} <= {T.RAY_CPU_ENERGY}

    # the same artifact a local grid stores: one cell trained here, deterministic on the CPU for its seed
    name = next(n for n, d in cells.items() if d["cell"]["kind"] == "train")
    c = cells[name]["cell"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        meter, _ = T.open_meter(torch.device("cpu"))
        here = T.run_cell(
            spec, Cell(**{**c, "groups": tuple(c["groups"])}), T.load_text(spec),
            T.Trainer(spec, torch.device("cpu"), meter),
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert here["loss"] == cells[name]["loss"] and here["val"] == cells[name]["val"]


def test_training_cluster_flags_refused_in_one_line(tmp_path):
    db = tmp_path / "t.db"
    p = run_cli("training", "run", "--ray", "auto", "--workers", "2", db=db)
    assert p.returncode == 2 and "--workers with --ray" in p.stderr, p.stderr
    p = run_cli("training", "run", "--ray", "auto", "--device", "cuda:1", db=db)
    assert p.returncode == 2 and "give --device cpu or cuda" in p.stderr, p.stderr
    from training_seed import write_corpus

    corpus = write_corpus(tmp_path / "corpus")
    p = run_cli("training", "run", "--ray", "127.0.0.1:1", "--corpus", *corpus, db=db, timeout=120)
    assert p.returncode == 2 and "cannot join a Ray cluster at 127.0.0.1:1" in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1
    assert not db.exists()
