"""Generated bad input at the two doors users push files and flags through: the import path and the run flags.

Seeded and bounded (derandomized examples, a fixed count), so a failure reproduces and the suite stays fast.
Each property: the input is either taken whole or refused with one line that names the problem; nothing
half-written is left in the store, and no other exception escapes.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profilers.cli import build_parser
from profilers.commands.base import UsageError
from profilers.commands.run import spec_from_args
from profilers.spec import SpecError, SweepSpec
from profilers.store import Store, StoreError
from profilers.store.exchange import export_run, import_run, validate_export

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# JSON-ish values a damaged or hand-edited file can hold where a field should be
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def export_doc(tmp_path_factory) -> dict:
    from conftest import seed_store

    db = tmp_path_factory.mktemp("fuzz") / "src.db"
    run_id = seed_store(
        db, variants=("layernorm", "rmsnorm"), impls=("native",), shapes=((8, 64),), modes=("fwd",), rounds=2
    )
    with Store(db) as s:
        return json.loads(json.dumps(export_run(s, run_id)))


def _counts(store: Store) -> tuple[int, int, int]:
    return tuple(store.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in ("runs", "points", "artifacts"))


def _one_line(e: Exception) -> None:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, text


@pytest.fixture(scope="module")
def dest_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzzdest") / "dest.db"
    Store(db).close()
    return db


@FUZZ
@given(data=st.data())
def test_a_damaged_export_is_imported_whole_or_refused_in_one_line(export_doc, dest_db, data):
    doc = copy.deepcopy(export_doc)
    doc["run"]["uid"] = data.draw(st.uuids()).hex  # a fresh run each example: never "already in this store"
    n_points = len(doc["points"])
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["run", "point", "top"]))
        obj = {"run": doc.get("run"), "top": doc}.get(where)
        if where == "point":
            pts = doc.get("points")
            obj = pts[data.draw(st.integers(0, len(pts) - 1))] if isinstance(pts, list) and pts else None
        if not isinstance(obj, dict) or not obj:
            continue  # an earlier damage replaced or emptied it
        key = data.draw(st.sampled_from(sorted(obj)))
        if data.draw(st.booleans()):
            obj[key] = data.draw(JUNK)
        else:
            del obj[key]
    with Store(dest_db) as store:
        before = _counts(store)
        try:
            run_id = import_run(store, doc)
        except StoreError as e:
            _one_line(e)
            assert _counts(store) == before, "a refused import left rows behind"
            return
        try:
            # taken whole: it exports again and validates, with every point, and nothing stored is NaN
            again = export_run(store, run_id)
            validate_export(json.loads(json.dumps(again)))
            assert len(again["points"]) == n_points
            for p in again["points"]:
                for k, v in p.items():
                    assert not (isinstance(v, float) and math.isnan(v)), f"NaN stored in {k}"
        finally:
            store.delete_run(run_id)


SHAPE = st.one_of(
    st.from_regex(r"-?[0-9]{1,9}[xX×][0-9]{1,9}", fullmatch=True),
    st.text(alphabet="0123456789xX×-, .e", max_size=14),
)


@FUZZ
@given(
    shapes=st.lists(SHAPE, min_size=0, max_size=3).map(",".join),
    rounds=st.one_of(st.none(), st.sampled_from(["quick", "accurate", "0", "1", "7", "101", "x", "-3", "2.5"])),
    ci=st.one_of(st.none(), st.sampled_from(["0", "0.1", "5", "50", "51", "-1", "nan", "inf", "abc"])),
    budget=st.one_of(st.none(), st.sampled_from(["0", "-5", "1e9", "nan", "10", "0.001", "x"])),
    threads=st.one_of(st.none(), st.sampled_from(["0", "-1", "1", "2", "99999", "1.5"])),
    dtypes=st.one_of(st.none(), st.sampled_from(["fp32", "bf16,fp16", "float64", "", "fp8", "fp32,,fp32"])),
    modes=st.one_of(st.none(), st.sampled_from(["fwd", "bwd,fwdbwd", "step", "", "FWD"])),
    variants=st.one_of(st.none(), st.sampled_from(["all", "rmsnorm", "layernorm,foo", ",", "dyt,dyt"])),
    allocator=st.one_of(st.none(), st.sampled_from(["reuse", "system", "jemalloc"])),
    cache=st.one_of(st.none(), st.sampled_from(["warm", "cold", "hot"])),
)
def test_run_flags_become_a_valid_spec_or_one_line(
    shapes, rounds, ci, budget, threads, dtypes, modes, variants, allocator, cache
):
    argv = ["run", "--shapes", shapes]
    for flag, value in (
        ("--rounds", rounds),
        ("--ci-target-pct", ci),
        ("--budget-ms", budget),
        ("--threads", threads),
        ("--dtypes", dtypes),
        ("--modes", modes),
        ("--variants", variants),
        ("--cpu-allocator", allocator),
        ("--cache", cache),
    ):
        if value is not None:
            argv += [flag, value]
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:  # argparse: a wrong type or choice (the CLI prints it and exits 2)
        _one_line(e)
        return
    try:
        spec = spec_from_args(args)
    except SpecError as e:
        _one_line(e)
        return
    # accepted: every value is in range and the spec survives its own JSON
    assert spec.points() and all(t > 0 and h > 0 for t, h in spec.shapes)
    assert 2 <= spec.rounds <= 100 and 0.1 <= spec.ci_target_pct <= 50
    assert spec.budget_ms > 0 and math.isfinite(spec.budget_ms)
    assert SweepSpec.from_json(spec.to_json()) == spec
