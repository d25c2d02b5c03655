"""The store's API on both back ends (each test taking ``any_store`` or ``new_store`` runs on a SQLite file and
on a throwaway PostgreSQL database); what only a SQLite file has (WAL, its header, its v1 migration) on SQLite."""

import json
import os
import socket
import sqlite3

import pytest
from conftest import ROOT

from profilers.spec import SweepSpec
from profilers.store import Store, StoreError
from profilers.store.exchange import export_run, import_run, validate_export
from profilers.store.records import PointResult
from profilers.store.schema import SCHEMA_VERSION

SPEC = SweepSpec(variants=("rmsnorm",), impls=("native", "eager"), shapes=((8, 16),))


def _point(**kw) -> PointResult:
    base = dict(
        variant="rmsnorm",
        impl="native",
        device="cpu",
        dtype="float32",
        tokens=8,
        hidden=16,
        mode="fwd",
        status="ok",
        timing_method="cpu_blocks",
        n_samples=5,
        p20_us=1.0,
        p50_us=2.0,
        p80_us=3.0,
        mean_us=2.0,
        iqr_us=1.0,
        noisy=True,
        bytes_moved=1088,
        gbps=0.5,
        roofline_pct=2.0,
        peak_bytes=512,
        max_abs_err=1e-7,
        compile_s=None,
        extra={"k": 1},
    )
    base.update(kw)
    return PointResult(**base)


def _run(store: Store, n_points: int = 2, status: str = "completed") -> int:
    rid = store.create_run(SPEC, {"cpu_model": "x"}, {"torch": "t"}, n_points, label="lab")
    for i in range(n_points):
        store.add_point(rid, i, _point(impl=("native", "eager")[i % 2]))
    store.finish_run(rid, status)
    return rid


def test_schema_version_and_wal(tmp_path):
    with Store(tmp_path / "s.db") as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_points_round_trip_with_units_and_none(any_store):
    with Store(any_store) as s:
        rid = _run(s)
        pts = s.points(rid)
        assert [p["seq"] for p in pts] == [0, 1]
        assert pts[0]["p50_us"] == 2.0 and pts[0]["noisy"] is True and pts[0]["extra"] == {"k": 1}
        assert pts[0]["compile_s"] is None
        run = s.get_run(rid)
        assert run["status"] == "completed" and run["points_ok"] == 2 and run["label"] == "lab"
        assert run["spec"]["variants"] == ["rmsnorm"]


def test_unknown_run_is_a_store_error(any_store):
    with Store(any_store) as s, pytest.raises(StoreError, match="no run 42"):
        s.get_run(42)


def test_running_run_of_dead_process_is_marked_interrupted(any_store):
    path = any_store
    with Store(path) as s:
        rid = s.create_run(SPEC, {}, {}, 3)
        s.add_point(rid, 0, _point())
        # pretend a process that no longer exists owned it
        s.execute("UPDATE runs SET pid=:pid, pid_started=1.0 WHERE id=:id", pid=2**22 + 12345, id=rid)
    with Store(path) as s:
        run = s.get_run(rid)
        assert run["status"] == "interrupted" and run["points_done"] == 1


def test_running_run_of_live_process_stays_running(any_store):
    path = any_store
    with Store(path) as s:
        rid = s.create_run(SPEC, {}, {}, 3)
    with Store(path) as s:
        assert s.get_run(rid)["status"] == "running"
        assert s.get_run(rid)["host"] == socket.gethostname() and s.get_run(rid)["pid"] == os.getpid()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than NormScope"):
        Store(path)


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a NormScope store"):
        Store(path)


def test_export_import_round_trip(new_store):
    with Store(new_store()) as a:
        rid = _run(a)
        doc = export_run(a, rid)
    doc = json.loads(json.dumps(doc))  # through real JSON
    with Store(new_store()) as b:
        new_id = import_run(b, doc, source="import:test.json")
        run = b.get_run(new_id)
        assert run["uid"] == doc["run"]["uid"] and run["source"] == "import:test.json"
        assert len(b.points(new_id)) == 2
        assert b.points(new_id)[1]["impl"] == "eager"
        with pytest.raises(StoreError, match="already in this store"):
            import_run(b, doc)


def test_fill_run_completes_a_running_run_in_one_step_and_only_once(new_store):
    with Store(new_store()) as a:
        doc = export_run(a, _run(a))
    with Store(new_store()) as b:
        rid = b.create_run(SPEC, {}, {}, 6, label="spread")
        b.fill_run(rid, doc["run"] | {"machine": {"cpu_model": "merged"}}, doc["points"])
        run = b.get_run(rid)
        assert run["status"] == "completed" and run["machine"]["cpu_model"] == "merged"
        assert run["points_planned"] == run["points_done"] == 2 and run["label"] == "spread"
        with pytest.raises(StoreError, match="not running"):
            b.fill_run(rid, doc["run"], doc["points"])
        assert len(b.points(rid)) == 2  # the refused second fill added nothing


def _valid_doc(tmp_path):
    with Store(tmp_path / "v.db") as s:
        return json.loads(json.dumps(export_run(s, _run(s))))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "not a NormScope run export"),
        (lambda d: d.update(schema_version=99), "newer than"),
        (lambda d: d["run"].update(status="exploded"), "run.status"),
        (lambda d: d["run"].update(copy_gbps="fast"), "run.copy_gbps should be float"),
        (lambda d: d["run"]["spec"].update(variants=["nope"]), "run.spec is invalid"),
        (lambda d: d["points"][0].update(p50_us="1"), r"points\[0\].p50_us should be float"),
        (lambda d: d["points"][0].update(variant="superNorm"), r"points\[0\].variant"),
        (lambda d: d["points"][1].update(tokens=None), r"points\[1\].tokens is missing"),
        (lambda d: d["points"][0].update(evil="__import__('os')"), "unknown field"),
        (lambda d: d["points"][0].update(tokens=-4), "non-positive shape"),
        (lambda d: d.pop("points"), "lacks"),
        (lambda d: d["points"][0].update(p50_us=-3.0), r"points\[0\].p50_us is negative"),
        (lambda d: d["points"][0].update(p50_us=float("nan")), r"points\[0\].p50_us should be float"),
        (lambda d: d["points"][0].update(p20_us=1e9), "p20_us .* > p50_us"),
        (lambda d: d["points"][0].update(tokens=10**30), "beyond a 64-bit integer"),
        (lambda d: d["points"][0].update(tokens=2**40), "out of range"),
        (lambda d: d["run"].update(kind="séance"), "run.kind"),
        (lambda d: d.update(artifacts=[1, 2]), "artifacts"),
    ],
)
def test_import_rejects_malformed_files_and_changes_nothing(tmp_path, any_store, mutate, message):
    doc = _valid_doc(tmp_path)
    mutate(doc)
    with Store(any_store) as s:
        counts = "SELECT (SELECT COUNT(*) FROM runs) AS r, (SELECT COUNT(*) FROM points) AS p"
        before = tuple(s.query(counts)[0].values())
        with pytest.raises(StoreError, match=message):
            import_run(s, doc)
        after = tuple(s.query(counts)[0].values())
        assert tuple(before) == tuple(after) == (0, 0)


def test_validate_accepts_an_export(tmp_path):
    run, points = validate_export(_valid_doc(tmp_path))
    assert run["status"] == "completed" and len(points) == 2


def test_delete_and_label(any_store):
    with Store(any_store) as s:
        rid = _run(s)
        s.set_label(rid, "renamed")
        assert s.get_run(rid)["label"] == "renamed"
        s.delete_run(rid)
        assert s.list_runs() == [] and s.points(rid) == []


def test_v1_store_is_migrated_keeping_its_points(tmp_path):
    from sqlalchemy import create_engine

    from profilers.store import schema as store_mod
    from profilers.store.backend import SQLITE

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as c:
        store_mod._v1(c, SQLITE)
        c.exec_driver_sql("PRAGMA user_version=1")
    engine.dispose()
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO runs (uid, status, created_at, spec_json, machine_json, versions_json) VALUES (?,?,?,?,?,?)",
        ("u1", "completed", "2026-01-01T00:00:00+00:00", SPEC.to_json(), "{}", "{}"),
    )
    con.execute(
        "INSERT INTO points (run_id, seq, variant, impl, device, dtype, tokens, hidden, mode, status, p50_us,"
        " created_at) VALUES (1, 0, 'rmsnorm', 'native', 'cpu', 'float32', 8, 16, 'fwd', 'ok', 2.5, 'now')"
    )
    con.commit()
    con.close()
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        (p,) = s.points(1)
        assert p["p50_us"] == 2.5 and p["energy_mj_per_call"] is None and p["kernels_per_call"] is None
        cols = {r["name"] for r in s.query("PRAGMA table_info(points)")}
        from profilers.store.schema import POINT_COLUMNS

        assert set(POINT_COLUMNS) <= cols
        assert s.get_run(1)["series"] is None


def test_v1_export_is_imported(tmp_path, any_store):
    doc = _valid_doc(tmp_path)
    doc["schema_version"] = 1
    for k in ("series", "sensors"):
        doc["run"].pop(k)
    for p in doc["points"]:
        for k in [k for k in p if k.startswith(("energy_", "kernel")) or k in ("launch_overhead_pct", "trace_path")]:
            p.pop(k)
    with Store(any_store) as s:
        rid = import_run(s, doc)
        assert len(s.points(rid)) == 2


def test_artifacts_are_stored_exported_and_imported(new_store):
    with Store(new_store()) as a, Store(new_store()) as b:
        rid = _run(a)
        a.put_artifact(rid, "curve:0", {"loss": [3.0, 2.5]})
        a.put_artifact(rid, "curve:1", {"loss": [3.1]})
        a.put_artifact(rid, "curve:0", {"loss": [3.0, 2.4]})  # replaced, not duplicated
        a.put_artifact(rid, "table", [1, 2])
        assert a.artifact(rid, "curve:0") == {"loss": [3.0, 2.4]}
        assert list(a.artifacts(rid, "curve:")) == ["curve:0", "curve:1"]
        assert a.artifact(rid, "missing") is None
        doc = json.loads(json.dumps(export_run(a, rid)))
        new = import_run(b, doc)
        assert b.artifacts(new) == a.artifacts(rid)
        b.delete_run(new)
        assert b.artifacts(new) == {}


def test_shipped_reference_exports_import_after_schema_changes(any_store):
    """Exports made by earlier versions (the GPU reference runs are schema v2) import into today's store."""
    from profilers.store.exchange import load_export_file

    files = sorted((ROOT / "data" / "reference").glob("*.json"))
    assert files, "data/reference/ ships at least one run"
    with Store(any_store) as s:
        for f in files:
            doc = load_export_file(f)
            rid = import_run(s, doc, source=f"import:{f.name}")
            run = s.get_run(rid)
            assert run["kind"] == doc["run"].get("kind", "kernels") and run["points_done"] == len(doc["points"])
        kinds = {r["kind"] for r in s.list_runs()}
        assert "kernels" in kinds and "blocks" in kinds  # kernel sweeps and the Llama-3-8B block run
