"""The numerics lab: measured cells, eps underflow, causes, the recommendation derived from the table, the CLI."""

import copy
import json

import pytest
import torch
from conftest import run_cli

from profilers import registry
from profilers.labs.numerics import analysis as analysis
from profilers.labs.numerics import measure as numerics
from profilers.labs.numerics.spec import NumericsSpec, parse_eps
from profilers.spec import SpecError
from profilers.store import Store

SMALL = dict(
    variants=("layernorm", "rmsnorm", "groupnorm", "batchnorm", "dyt"),
    dtypes=("float32", "float16", "float8_e4m3fn"),
    eps=(1e-12, 1e-8, 1e-5, 1e-4, 1e-3, 1e-2),
    inputs=("typical", "zero", "constant", "tiny_1e-4", "large"),
    rows=8,
    hidden=32,
    groups=4,
)


@pytest.fixture(scope="module")
def measured():
    """One small measured table (about a second), shared by the tests that read it."""
    torch.set_num_threads(1)
    spec = NumericsSpec(**SMALL)
    cells = list(numerics.cells(spec, None))
    dtypes = {d: numerics.dtype_facts(d) for d in spec.dtypes}
    return spec, cells, dtypes


def _cell(cells, **kw):
    (c,) = [c for c in cells if all(c[k] == v for k, v in kw.items())]
    return c


def test_constant_fp16_row_with_eps_1e12_is_a_nan_risk_with_its_cause(measured):
    spec, cells, dtypes = measured
    for fam in ("zero", "constant"):
        c = _cell(cells, variant="layernorm", dtype="float16", eps=1e-12, input=fam, impl="eager")
        assert c["status"] == "ok" and c["nan_count"] > 0
        assert c["eps_held"] == 0.0 and c["eps_class"] == "zero"
        assert c["zero_denominator_groups"] == spec.rows
        why = analysis.cause(c, dtypes)
        assert "rounds to 0 in float16" in why and "0·∞ = NaN" in why
    # the same rows in fp32, or with fp32 statistics, are finite: the risk is the dtype's, not the formula's
    assert _cell(cells, variant="layernorm", dtype="float32", eps=1e-12, input="zero", impl="eager")["nan_count"] == 0
    assert _cell(cells, variant="layernorm", dtype="float16", eps=1e-12, input="zero", impl="upcast")["nan_count"] == 0
    (rec,) = [
        r
        for r in analysis.risk_map(cells, "eager", dtypes, spec.groups)
        if (r["variant"], r["dtype"], r["eps"]) == ("layernorm", "float16", 1e-12)
    ]
    assert {"zero", "constant"} <= set(rec["nonfinite_inputs"]) and rec["causes"]
    known = {k["impl"]: k for k in analysis.known_case(cells, dtypes)}
    assert known["eager"]["risk"] and "rounds to 0" in known["eager"]["cause"]


def test_eps_below_the_smallest_normal_is_reported_as_underflowing():
    fp16 = numerics.dtype_facts("float16")
    assert fp16["smallest_normal"] == pytest.approx(6.1035e-05, rel=1e-4)
    sub = numerics.eps_facts(1e-5, "float16", fp16["smallest_normal"])
    assert sub["class"] == "subnormal" and sub["underflows"] and 0 < sub["held"] < fp16["smallest_normal"]
    assert numerics.eps_facts(1e-12, "float16", fp16["smallest_normal"])["class"] == "zero"
    assert not numerics.eps_facts(1e-4, "float16", fp16["smallest_normal"])["underflows"]
    bf16 = numerics.dtype_facts("bfloat16")
    assert numerics.eps_facts(1e-12, "bfloat16", bf16["smallest_normal"])["class"] == "normal"
    e4m3 = numerics.dtype_facts("float8_e4m3fn")
    assert numerics.eps_facts(1e-2, "float8_e4m3fn", e4m3["smallest_normal"])["class"] == "subnormal"


def test_an_underflowing_eps_blocks_the_in_dtype_recommendation(measured):
    spec, cells, dtypes = measured
    recs = {(r.variant, r.dtype, r.impl): r for r in analysis.recommend(cells, dtypes, spec.groups)}
    rms = recs[("rmsnorm", "float16", "eager")]
    assert rms.status == "recommended" and rms.eps >= 1e-4  # 1e-5 is a subnormal in fp16
    assert any("underflows" in b for b in rms.blockers)
    # e4m3's smallest normal is 2^-6: no eps in the grid is a normal number there
    assert recs[("rmsnorm", "float8_e4m3fn", "eager")].status == "none_safe"
    assert recs[("layernorm", "float8_e4m3fn", "native")].status == "unsupported"  # torch has no fp8 kernel
    assert "not implemented" in recs[("layernorm", "float8_e4m3fn", "native")].evidence
    assert recs[("dyt", "float16", "eager")].status == "no_eps"


def test_the_recommendation_follows_the_table(measured):
    """Change the measured table and the recommendation changes with it."""
    spec, cells, dtypes = measured
    key = ("rmsnorm", "float32", "upcast")

    def rec(table):
        return {(r.variant, r.dtype, r.impl): r for r in analysis.recommend(table, dtypes, spec.groups)}[key]

    before = rec(cells)
    assert before.status == "recommended"
    grid = sorted(spec.eps)
    # a NaN at the recommended eps pushes the recommendation to the next larger eps
    edited = copy.deepcopy(cells)
    for c in edited:
        if (c["variant"], c["dtype"], c["impl"]) == key and c["eps"] == before.eps and c["input"] == "typical":
            c["nan_count"] = 3
    after = rec(edited)
    assert after.eps == grid[grid.index(before.eps) + 1]
    assert any("typical: 3 NaN/Inf" in b for b in after.blockers)
    # an error beyond budget at a larger eps moves it further up, since every larger eps must be safe too
    edited2 = copy.deepcopy(cells)
    for c in edited2:
        if (c["variant"], c["dtype"], c["impl"]) == key and c["eps"] == 1e-3 and c["input"] == "typical":
            c["max_abs_err"] = 1.0
    assert rec(edited2).eps == 1e-2
    # NaN at the largest eps: nothing in the grid is safe
    edited3 = copy.deepcopy(cells)
    for c in edited3:
        if (c["variant"], c["dtype"], c["impl"]) == key and c["eps"] == grid[-1] and c["input"] == "zero":
            c["nan_count"] = 1
    assert rec(edited3).status == "none_safe"


def test_a_family_no_eps_fixes_is_listed_apart(measured):
    spec, cells, dtypes = measured
    recs = {(r.variant, r.dtype, r.impl): r for r in analysis.recommend(cells, dtypes, spec.groups)}
    ln = recs[("layernorm", "float16", "eager")]
    # |x| ≈ 1000: x² overflows fp16 in the variance, whatever the eps
    assert any(s.startswith("large:") for s in ln.not_fixed_by_eps)
    c = _cell(cells, variant="layernorm", dtype="float16", eps=1e-2, input="large", impl="eager")
    assert c["variance_overflow_groups"] > 0
    assert "overflowed" in analysis.cause(c, dtypes)


def test_fused_operator_is_compared_with_both_formulas(measured):
    _, cells, _ = measured
    native = _cell(cells, variant="layernorm", dtype="float16", eps=1e-12, input="zero", impl="native")
    assert native["nan_count"] == 0  # torch's CPU kernel upcasts: no NaN where the in-dtype formula has them all
    assert native["vs_eager_finiteness_mismatch"] == native["numel"]
    assert native["vs_upcast_finiteness_mismatch"] == 0
    rows = analysis.fused_vs_eager(cells)
    assert rows and all(r["vs_upcast_max_abs"] is not None or r["vs_upcast_finiteness_mismatch"] for r in rows)


def test_missing_readings_are_none_with_a_reason(measured):
    _, cells, _ = measured
    c = _cell(cells, variant="dyt", dtype="float16", eps=None, input="typical", impl="native")
    assert c["status"] == "unsupported" and "DyT" in c["reason"] and "max_abs_err" not in c
    z = _cell(cells, variant="rmsnorm", dtype="float32", eps=1e-5, input="zero", impl="eager")
    assert z["max_rel_err"] is None and "all zero" in z["err_reason"] and z["max_abs_err"] == 0.0
    assert (
        _cell(cells, variant="layernorm", dtype="float16", eps=1e-5, input="typical", impl="native")[
            "variance_overflow_groups"
        ]
        is None
    )  # not visible inside a fused kernel


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2"])
def test_software_fp8_rounding_matches_torch_casts(name):
    """The fallback for a torch without fp8 dtypes rounds exactly as torch's casts do."""
    dt = getattr(torch, name)
    g = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randn(4000, generator=g) * 10.0 ** torch.randint(-9, 5, (4000,), generator=g),
            torch.tensor([0.0, -0.0, 1e-12, 2.0**-9, 2.0**-17, 448.0, 464.0, 1000.0, 57344.0, 1e6, float("nan")]),
        ]
    )
    ours = numerics.round_float8(x, name)
    theirs = x.to(dt).to(torch.float32)
    same = (ours == theirs) | (torch.isnan(ours) & torch.isnan(theirs))
    assert bool(same.all()), x[~same][:5]


def test_spec_round_trips_and_refuses_bad_input():
    spec = NumericsSpec(dtypes=("fp16", "e4m3"), eps=(1e-5, 1e-12), recorded="demo", label="x")
    assert spec.dtypes == ("float16", "float8_e4m3fn") and spec.eps == (1e-12, 1e-5)
    assert NumericsSpec.from_json(spec.to_json()) == spec
    assert registry.get("numerics").parse_spec(json.loads(spec.to_json())) == spec
    with pytest.raises(SpecError, match="each eps is a number in"):
        NumericsSpec(eps=(0.0,))
    with pytest.raises(SpecError, match="divisible by groups"):
        NumericsSpec(hidden=30, groups=8)
    with pytest.raises(SpecError, match="unknown dtype"):
        NumericsSpec(dtypes=("int4",))
    with pytest.raises(SpecError, match="not an import path"):
        NumericsSpec(recorded="model.pt")
    with pytest.raises(SpecError, match="not a list of numbers"):
        parse_eps("1e-5,abc")


def test_cli_run_stores_a_run_that_exports_and_imports(tmp_path):
    db = tmp_path / "r.db"
    p = run_cli(
        "numerics", "run", "--variants", "layernorm,rmsnorm", "--dtypes", "fp16,fp32", "--eps", "1e-12,1e-5,1e-3",
        "--inputs", "typical,zero", "--rows", "4", "--hidden", "16", "--recorded", "none", "--json", db=db,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    eager = next(k for k in doc["known_case"] if k["impl"] == "eager")
    assert eager["risk"] and eager["nan_count"] == 4 * 16
    with Store(db) as s:
        (run,) = s.list_runs()
        assert run["kind"] == "numerics" and run["status"] == "completed"
        assert run["machine"]["cpu_model"] and run["versions"]["torch"]
        assert len(s.artifact(run["id"], "numerics/cells")) == 2 * 2 * 3 * 2 * 3
    out = tmp_path / "num.json"
    assert run_cli("export", "1", "-o", str(out), db=db).returncode == 0
    other = tmp_path / "other.db"
    p = run_cli("import", str(out), db=other)
    assert p.returncode == 0, p.stderr
    with Store(other) as s:
        assert s.list_runs()[0]["kind"] == "numerics"
        assert len(s.artifact(1, "numerics/cells")) == 72
    shown = run_cli("numerics", "show", "1", db=other)
    assert shown.returncode == 0 and "pytorch#41527" in shown.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "tiny"], "not a list of numbers"),
        (["--dtypes", "int3"], "unknown dtype"),
        (["--recorded", "no_such_module_xyz:build"], "cannot import"),
        (["--hidden", "30", "--groups", "8"], "divisible by groups"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_stores_nothing(tmp_path, args, message):
    db = tmp_path / "r.db"
    p = run_cli("numerics", "run", "--variants", "layernorm,groupnorm", "--dtypes", "fp16", *args, db=db)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    if db.exists():
        with Store(db) as s:
            assert s.list_runs() == []


def test_recorded_activations_come_from_a_users_module_through_hooks(tmp_path):
    (tmp_path / "usermodel.py").write_text(
        "import torch\n"
        "def build(width='24'):\n"
        "    torch.manual_seed(0)\n"
        "    w = int(width)\n"
        "    m = torch.nn.Sequential(torch.nn.Linear(8, w), torch.nn.LayerNorm(w), torch.nn.Linear(w, w),"
        " torch.nn.RMSNorm(w))\n"
        "    return m, [torch.randn(16, 8) * 3 for _ in range(4)]\n"
    )
    db = tmp_path / "r.db"
    p = run_cli(
        "numerics", "run", "--variants", "layernorm", "--dtypes", "fp16", "--eps", "1e-5", "--inputs", "typical",
        "--recorded", "usermodel:build", "--arg", "width=24", "--recorded-rows", "40", db=db,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    with Store(db) as s:
        info = s.artifact(1, "numerics/recorded")
        cells = s.artifact(1, "numerics/cells")
    assert info["layers"] == ["1", "3"] and info["hidden"] == 24 and info["rows"] == 40
    rec = [c for c in cells if c["input"] == "recorded"]
    assert len(rec) == 3 and all(c["hidden"] == 24 and c["status"] == "ok" for c in rec)
