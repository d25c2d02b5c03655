import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, db: Path | None = None, timeout: float = 300, env: dict | None = None):
    """Run `python -m profilers …` as a user would; returns the CompletedProcess."""
    e = dict(os.environ)
    e.pop("NORMSCOPE_DB", None)
    if db is not None:
        e["NORMSCOPE_DB"] = str(db)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "profilers", *args],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sweep(shapes: str, variants: str, impls: str, *extra: str, budget_ms: str = "5") -> list[str]:
    """Arguments of a small, quick `run`."""
    return [
        "run",
        "--shapes",
        shapes,
        "--variants",
        variants,
        "--impls",
        impls,
        "--budget-ms",
        budget_ms,
        "--warmup-ms",
        "2",
        *extra,
    ]


def run_json(*args: str, db: Path, timeout: float = 300) -> dict:
    p = run_cli(*args, "--json", db=db, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def import_shipped(store, tmp_path: Path, name: str) -> int:
    """One shipped reference run (``data/reference/NAME``) imported into ``store``; its run id."""
    from profilers.store import reference

    ref = tmp_path / f"reference-{name}"
    ref.mkdir()
    (ref / name).write_bytes((ROOT / "data" / "reference" / name).read_bytes())
    (run_id,), problems = reference.sync(store, ref)
    assert not problems
    return run_id


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


def seed_store(db: Path, **spec_kw) -> int:
    """A real tiny CPU sweep into ``db``, in this process, for page tests.

    The load of the test machine is not checked (the disturbance probe is a null one that says so) and the
    CI target is wide, so the store's points are ordinary timed points whatever else the machine runs;
    the measuring itself is the real engine.
    """
    from profilers.measure.machine.disturbance import NullProbe
    from profilers.measure.sweep.runner import run_sweep
    from profilers.spec import SweepSpec
    from profilers.store import Store

    kw = dict(budget_ms=5.0, warmup_ms=2.0, rounds=3, ci_target_pct=50.0)
    kw.update(spec_kw)
    with Store(db) as store:
        out = run_sweep(SweepSpec(**kw), store, probe=NullProbe("test store: the machine's load is not checked"))
    assert out.status == "completed", out.error
    return out.run_id


def measure_one(p, ctx):
    """One point measured the way a sweep measures it: a group of its own, in interleaved rounds."""
    from profilers.measure.sweep.group import measure_group

    (result,) = measure_group([p], ctx)
    return result


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (``tests/pg.py``); skipped where the server is not
    installed, an error instead when NORMSCOPE_REQUIRE_POSTGRES=1 (as in CI)."""
    import pg

    why = pg.unavailable()
    if why:
        if os.environ.get("NORMSCOPE_REQUIRE_POSTGRES") == "1":
            raise RuntimeError(f"NORMSCOPE_REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)
    cluster = pg.Cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """The URL of a new, empty database of the session's cluster (no NormScope tables yet)."""
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request, tmp_path):
    """Makes fresh stores of one back end, created and at the current schema (a file path or a database URL
    each call); a test that takes it runs once on SQLite and once on PostgreSQL."""
    from profilers.store import Store

    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None
    made = itertools.count()

    def make() -> str:
        where = str(tmp_path / f"s{next(made)}.db") if cluster is None else cluster.create_database()
        Store(where, migrate=True).close()
        return where

    return make


@pytest.fixture
def any_store(new_store) -> str:
    """A store of either back end (the test runs on both), created and at the current schema."""
    return new_store()
