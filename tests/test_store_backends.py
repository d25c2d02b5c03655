"""The store on both back ends (a SQLite file and a throwaway PostgreSQL cluster): one API, the same answers;
`store migrate` and `store copy` with nothing lost; bad URLs, credentials and schemas refused in one line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, sweep
from test_store import SPEC, _run

from profilers.store import Store, StoreError, locate
from profilers.store.exchange import export_run, import_run
from profilers.store.schema import SCHEMA_VERSION


def test_the_api_answers_alike_on_both_back_ends(any_store):
    with Store(any_store) as s:
        assert s.schema_version == SCHEMA_VERSION
        rid = _run(s, n_points=3)
        pts = s.points(rid)
        assert [p["seq"] for p in pts] == [0, 1, 2]
        assert pts[0]["noisy"] is True and pts[0]["extra"] == {"k": 1} and pts[0]["compile_s"] is None
        run = s.get_run(rid)
        assert (run["status"], run["points_ok"], run["points_done"], run["label"]) == ("completed", 3, 3, "lab")
        assert [r["id"] for r in s.list_runs(kind="kernels")] == [rid] and s.list_runs(kind="blocks") == []
        s.put_artifact(rid, "lab:a", {"x": [1, 2]})
        s.put_artifact(rid, "lab:a", {"x": [3]})  # replaced, not added
        s.put_artifact(rid, "other", 1)
        assert s.artifacts(rid, "lab:") == {"lab:a": {"x": [3]}} and s.artifact(rid, "other") == 1
        df = s.points_table([rid])
        assert len(df) == 3 and df["p50_us"].tolist() == [2.0] * 3 and df["noisy"].tolist() == [True] * 3
        s.update_run(rid, copy_gbps=12.5, extra={"note": "n"})
        assert s.get_run(rid)["copy_gbps"] == 12.5 and s.get_run(rid)["extra"] == {"note": "n"}
        doc = json.loads(json.dumps(export_run(s, rid)))
        s.delete_run(rid)
        assert s.list_runs() == [] and s.points(rid) == [] and s.artifacts(rid) == {}
        again = import_run(s, doc)
        assert s.points(again)[2]["p50_us"] == 2.0 and s.artifact(again, "other") == 1
        with pytest.raises(StoreError, match="already in this store"):
            import_run(s, doc)


def _comparable(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc.pop("exported_at")
    return doc


def test_copy_sqlite_to_postgresql_and_back_loses_nothing(tmp_path, pg_url):
    src = tmp_path / "a.db"
    with Store(src) as s:
        ids = [_run(s, n_points=n) for n in (1, 2, 3)]
        s.put_artifact(ids[1], "table", {"rows": [[1, None, "x"]]})
        s.update_run(ids[2], series={"t": [0.0, 0.5]}, sensors={"gpu": "n/a"})
        s.delete_run(ids[0])  # a hole in the ids
        running = s.create_run(SPEC, {}, {}, 5)  # still measuring: not copied
        before = {i: _comparable(export_run(s, i)) for i in ids[1:]}
    p = run_cli("store", "copy", str(src), pg_url)
    assert p.returncode == 0, p.stderr
    assert "copied 2 runs (5 points, 1 artifacts)" in p.stderr and "every run kept its id" in p.stderr
    assert f"still running: {running}" in p.stderr and "pw-" not in p.stderr  # the password is never shown
    back = tmp_path / "b.db"
    assert run_cli("store", "copy", pg_url, str(back)).returncode == 0
    for where in (pg_url, back):
        with Store(where) as s:
            assert sorted(r["id"] for r in s.list_runs()) == ids[1:]
            assert {i: _comparable(export_run(s, i)) for i in ids[1:]} == before
            assert s.points_table(ids[1:])["seq"].tolist() == [0, 1, 0, 1, 2]
    again = run_cli("store", "copy", str(src), pg_url)
    assert "copied 0 runs" in again.stderr and "2 already there" in again.stderr
    # into a store whose ids are taken: new ids, said as a mapping; new runs keep counting after them
    other = tmp_path / "c.db"
    with Store(other) as s:
        _run(s), _run(s), _run(s)
    moved = run_cli("store", "copy", str(other), pg_url)
    assert moved.returncode == 0 and "new ids: run 2 → " in moved.stderr, moved.stderr
    with Store(pg_url) as s:
        assert len(s.list_runs()) == 5 and _run(s) > max(r["id"] for r in s.list_runs()[1:])


def test_migrate_creates_and_a_database_is_never_migrated_silently(pg_cluster, pg_url):
    p = run_cli("runs", db=pg_url)
    assert p.returncode == 2 and "has no NormScope tables" in p.stderr and "store migrate" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    m = run_cli("store", "migrate", pg_url)
    assert m.returncode == 0 and f"v{SCHEMA_VERSION}" in m.stderr
    assert run_cli("store", "migrate", pg_url).returncode == 0  # idempotent
    with Store(pg_url) as s:
        s.execute("UPDATE normscope_schema SET version=:v", v=SCHEMA_VERSION + 1)
    p = run_cli("runs", db=pg_url)
    assert p.returncode == 2 and "newer than NormScope" in p.stderr and "upgrade NormScope" in p.stderr


@pytest.mark.parametrize(
    "make_url, message",
    [
        (lambda c: c.url("postgres", password="not-it"), "refused the credentials"),
        (lambda c: c.url("no_such_db"), "does not exist"),
        (lambda c: "postgresql://u:secretpw@/db?host=/nonexistent-dir", "cannot reach PostgreSQL"),
        (lambda c: "mysql://u@h/db", "unknown store URL scheme"),
        (lambda c: "postgresql://u@localhost", "names no database"),
    ],
)
def test_bad_urls_get_one_line_and_exit_2(pg_cluster, make_url, message):
    url = make_url(pg_cluster)
    for args in (("runs",), ("store", "migrate", url)):
        p = run_cli(*args, db=url if args == ("runs",) else None)
        assert p.returncode == 2, p.stderr
        assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "not-it" not in p.stderr and "secretpw" not in p.stderr and "Traceback" not in p.stderr


def test_a_sweep_writes_into_postgresql_and_every_reader_reads_it(pg_url, tmp_path):
    assert run_cli("store", "migrate", pg_url).returncode == 0
    p = run_cli(*sweep("8x64", "rmsnorm,layernorm", "native"), "--json", db=pg_url)
    assert p.returncode == 0, p.stderr
    assert "store postgresql://normscope:***@/" in p.stderr and "pw-" not in p.stderr
    run_id = json.loads(p.stdout)["run_id"]
    with Store(pg_url) as s:
        assert s.get_run(run_id)["points_done"] == 2
    for args in (("runs",), ("export", str(run_id), "-o", str(tmp_path / "r.json"))):
        assert run_cli(*args, db=pg_url).returncode == 0
    rep = run_cli("report", str(run_id), "-o", str(tmp_path / "r.html"), db=pg_url)
    assert rep.returncode == 0, rep.stderr
    html = (tmp_path / "r.html").read_text()
    assert "rmsnorm" in html.lower() and "pw-" not in html  # the store's credentials are not in the report


_WRITER = """
import sys
from profilers.spec import SweepSpec
from profilers.store import Store
sys.path.insert(0, "tests")
from test_store import _point
where, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Store(where) as s:
    rid = s.create_run(SweepSpec(variants=("rmsnorm",), impls=("native",), shapes=((8, 16),)), {}, {}, n, label=tag)
    for i in range(n):
        s.add_point(rid, i, _point(impl="native", extra={"writer": tag, "i": i}))
    s.finish_run(rid, "completed")
"""


def test_two_writers_at_once_lose_and_duplicate_nothing(any_store):
    n = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, any_store, tag, str(n)], cwd=ROOT, stderr=subprocess.PIPE)
        for tag in ("a", "b")
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read().decode()
    with Store(any_store) as s:
        runs = s.list_runs()
        assert sorted(r["label"] for r in runs) == ["a", "b"]
        for r in runs:
            pts = s.points(r["id"])
            assert [p["seq"] for p in pts] == list(range(n)) and r["status"] == "completed"
            assert {p["extra"]["writer"] for p in pts} == {r["label"]}


@pytest.mark.slow  # two sweeps at once into PostgreSQL
def test_two_sweeps_on_two_cpu_sets_write_into_one_database_at_once(pg_url):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: each sweep holds one CPU set")
    assert run_cli("store", "migrate", pg_url).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "NORMSCOPE_DB"}
    env["NORMSCOPE_DB"] = pg_url
    cpus = sorted(os.sched_getaffinity(0))[:2]
    args = [*sweep("8x64,16x64", "rmsnorm,layernorm", "native,eager"), "--json"]
    procs = [
        subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, "-m", "profilers", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cpu in cpus
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [o[1] for o in outs]
    ids = [json.loads(o[0])["run_id"] for o in outs]
    with Store(pg_url) as s:
        for rid in ids:
            run = s.get_run(rid)
            pts = s.points(rid)
            assert run["points_planned"] == len(pts) == 8 and [p["seq"] for p in pts] == list(range(8))
        assert len({p["id"] for rid in ids for p in s.points(rid)}) == 16


@pytest.mark.slow  # a PostgreSQL cluster of its own, stopped mid-sweep
def test_the_database_going_away_mid_sweep_stops_it_with_a_reason_and_keeps_its_points(tmp_path):
    import pg

    why = pg.unavailable()
    if why:
        pytest.skip(why)
    cluster = pg.Cluster()  # its own: this test stops it
    try:
        url = cluster.create_database()
        assert run_cli("store", "migrate", url).returncode == 0
        env = {**os.environ, "NORMSCOPE_DB": url}
        args = sweep("8x64,16x64,32x64,64x64,128x64,256x64", "rmsnorm,layernorm", "native,eager", budget_ms="40")
        proc = subprocess.Popen(
            [sys.executable, "-m", "profilers", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 180
        committed = 0
        while time.monotonic() < deadline and committed < 2:
            time.sleep(0.3)
            with Store(url) as s:
                runs = s.list_runs()
                committed = runs[0]["points_done"] if runs else 0
        assert committed >= 2 and proc.poll() is None
        cluster.stop("immediate")
        _, err = proc.communicate(timeout=180)
        assert proc.returncode not in (0, None)
        last = err.strip().splitlines()[-1]
        assert "cannot reach PostgreSQL" in last or "PostgreSQL at" in last, err
        assert "points committed before are kept" in last and "Traceback" not in err
        cluster.start()
        with Store(url) as s:
            (run,) = s.list_runs()
            assert run["points_done"] >= committed and run["status"] == "interrupted"
            assert [p["seq"] for p in s.points(run["id"])] == list(range(run["points_done"]))
    finally:
        cluster.close()


def test_locations_name_the_store_without_its_password():
    loc = locate("postgresql://ana:hunter22@db.lab:5433/normscope?sslmode=require")
    assert loc.display == "postgresql://ana:***@db.lab:5433/normscope?sslmode=require"
    assert str(loc) == loc.display and not loc.is_file and loc.path is None
    assert locate("/x/results.db").path.name == "results.db"
    from profilers import jobs

    assert "hunter22" not in " ".join(jobs.argv(ROOT / "s.json", loc.target))
    assert jobs.worker_env(loc.target)["NORMSCOPE_DB"] == loc.target


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A SQLite store holding one small sweep, measured once for the module (tests copy it where they need it)."""
    src = tmp_path_factory.mktemp("swept") / "a.db"
    p = run_cli(*sweep("8x64", "rmsnorm,layernorm", "native"), db=src)
    assert p.returncode == 0, p.stderr
    return src


@pytest.mark.parametrize("name", ["pages/runs.py", "pages/results.py", "pages/run.py"])
def test_pages_read_a_postgresql_store_and_never_show_its_password(name, tmp_path, pg_url, monkeypatch, swept):
    from streamlit.testing.v1 import AppTest
    from test_pages import _text, page

    assert run_cli("store", "copy", str(swept), pg_url).returncode == 0
    at = page(name, pg_url, monkeypatch, references=tmp_path / "none")
    text = _text(at) + " ".join(c.value for c in at.sidebar.caption)
    assert "pw-" not in text and not at.error, [e.value for e in at.error]
    if name != "pages/run.py":  # the run was read: offered by its label (Runs) or its candidates (Results)
        options = [str(o) for box in at.selectbox for o in box.options]
        assert any(o.startswith("run 1 · completed") or o == "RMSNorm native" for o in options), options
    first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    first.run()
    side = " ".join(c.value for c in first.sidebar.caption)
    assert "Store: `postgresql://normscope:***@/" in side and "pw-" not in side


@pytest.fixture
def viewer_url(pg_cluster, pg_url) -> tuple[str, str]:
    """(writer URL, viewer URL): a migrated database holding one run, and a role that may only read it."""
    from sqlalchemy import make_url

    db = make_url(pg_url).database
    with Store(pg_url, migrate=True) as s:
        _run(s)
    return pg_url, pg_cluster.viewer(db)


def test_a_viewer_role_reads_everything_and_changes_nothing(viewer_url, tmp_path):
    writer, viewer = viewer_url
    with Store(viewer) as s:
        assert not s.can_write and len(s.list_runs()) == 1
    with Store(writer) as s:
        assert s.can_write
    assert run_cli("runs", db=viewer).returncode == 0
    rep = run_cli("report", "1", "-o", str(tmp_path / "r.html"), db=viewer)
    assert rep.returncode == 0, rep.stderr
    for args in (
        ("run", "--shapes", "8x64", "--variants", "rmsnorm", "--impls", "native"),
        ("import", str(tmp_path / "nothing.json")),
    ):
        if args[0] == "import":
            assert run_cli("export", "1", "-o", args[1], db=viewer).returncode == 0
        p = run_cli(*args, db=viewer)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "refused a write" in p.stderr or "already in this store" in p.stderr, p.stderr
        assert "view-only-pw" not in p.stderr
    p = run_cli("store", "copy", str(tmp_path / "none.db"), viewer)
    assert p.returncode == 2
    with Store(writer) as s:
        assert len(s.list_runs()) == 1 and s.query("SELECT COUNT(*) AS n FROM leases")[0]["n"] == 0


def test_a_viewers_pages_cannot_start_cancel_import_or_delete(viewer_url, tmp_path, monkeypatch):
    from test_pages import page

    _, viewer = viewer_url
    at = page("pages/runs.py", viewer, monkeypatch, references=tmp_path / "none")
    assert any("read-only here" in i.value for i in at.info)
    assert at.button(key="delete-1").disabled and at.checkbox(key="confirm-1").disabled
    run_page = page("pages/run.py", viewer, monkeypatch, references=tmp_path / "none")
    start = next(b for b in run_page.button if b.label == "Start")
    start.click().run()
    assert any("Not started: This store is read-only here" in e.value for e in run_page.error)
