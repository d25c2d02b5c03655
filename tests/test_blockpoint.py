"""Block sweeps where users touch them: the CLI, the store, the answer, the Blocks page."""

import json

import pytest
from conftest import ROOT, run_cli
from streamlit.testing.v1 import AppTest

from profilers.labs.blocks import analysis as blocks
from profilers.labs.blocks.spec import BlockSweepSpec
from profilers.spec import SpecError
from profilers.store import Store
from profilers.store.exchange import export_run, import_run

TINY = [
    "blocks",
    "run",
    "--preset",
    "tiny-decoder",
    "--norms",
    "layernorm,rmsnorm",
    "--placements",
    "pre_ln,post_ln",
    "--impls",
    "native",
    "--tokens",
    "128",
    "--modes",
    "fwd,fwdbwd,step",
    "--step-depth",
    "1",
    "--budget-ms",
    "30",
    "--warmup-ms",
    "5",
    "--rounds",
    "3",
]


@pytest.fixture(scope="module")
def block_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("blocks") / "results.db"
    p = run_cli(*TINY, "--json", db=db)
    assert p.returncode == 0, p.stderr
    return db


def test_block_sweep_times_every_configuration_and_breaks_it_down(block_db):
    with Store(block_db) as s:
        (run,) = s.list_runs()
        points = s.points(run["id"])
    assert run["kind"] == "blocks" and len(points) == 2 * 2 * 3
    timed = [p for p in points if p["status"] in ("ok", "imprecise", "unstable")]
    assert len(timed) == len(points), [(p["placement"], p["variant"], p["mode"], p["error"]) for p in points]
    for p in timed:
        assert p["block"] and p["placement"] in ("pre_ln", "post_ln") and p["gate"] in ("pass", "imprecise")
        comps = p["extra"]["components"]
        shares = comps["share_pct"]
        assert set(shares) == {"attention", "mlp", "norm", "residual", "other"}
        # the components and 'other' add up to the profiled time; the profiler's own cost is stated
        assert sum(shares.values()) == pytest.approx(100.0)
        assert shares["norm"] > 0 and comps["profiler_overhead_pct"] is not None
        # the four ranges never count the same time twice: together they fit in the profiled wall time
        assert comps["attributed_us_per_call"] <= 1.05 * comps["profiled_us_per_call"], comps
        # backward work is charged to the component whose forward made it, not left in 'other'
        bwd = comps["backward_us_per_call"]
        if p["mode"] == "fwd":
            assert bwd == {}
        else:
            assert bwd.get("norm", 0) > 0 and bwd.get("mlp", 0) > 0 and bwd.get("attention", 0) > 0, bwd
    base = next(p for p in timed if p["placement"] == "pre_ln" and p["variant"] == "layernorm" and p["mode"] == "fwd")
    assert base["ratio"] == 1.0 and base["ratio_baseline"] == "pre_ln layernorm native"


def test_the_answer_names_the_ratio_its_interval_and_the_norms_share(block_db):
    with Store(block_db) as s:
        points = s.points(s.list_runs()[0]["id"])
    lines = blocks.answers(points)
    assert any("this block's forward+backward time" in line and "95% interval" in line for line in lines)
    assert any("training step's time" in line for line in lines)
    assert any("the norm is" in line for line in lines)
    claims = blocks.claims(points)
    assert {c.level for c in claims} == {"block", "training step"}
    p = run_cli("blocks", "show", "1", db=block_db)
    assert p.returncode == 0 and "Switching LayerNorm → RMSNorm" in p.stdout and "±1%" in p.stdout
    wide = run_cli("blocks", "show", "1", "--margin-pct", "45", db=block_db)
    assert wide.returncode == 0 and "±45%" in wide.stdout and "±1%" not in wide.stdout
    bad = run_cli("blocks", "show", "1", "--margin-pct", "0", db=block_db)
    assert bad.returncode == 2 and "--margin-pct" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_block_runs_export_and_import(block_db, tmp_path):
    with Store(block_db) as a, Store(tmp_path / "b.db") as b:
        doc = json.loads(json.dumps(export_run(a, 1)))
        new = import_run(b, doc)
        assert b.get_run(new)["kind"] == "blocks" and len(b.points(new)) == len(a.points(1))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--preset", "nope"], "unknown model preset"),
        (["--preset", "tiny-decoder", "--tokens", "100"], "not a whole number of 64-token sequences"),
        (["--preset", "tiny-decoder", "--modes", "step"], "needs step_depth"),
        (["--preset", "tiny-decoder", "--norms", "batchnorm"], "unknown norm"),
        (["--preset", "tiny-decoder", "--placements", "sideways"], "unknown placement"),
    ],
)
def test_bad_block_flags_are_one_line_exit_2(args, needle, tmp_path):
    p = run_cli("blocks", "run", *args, db=tmp_path / "x.db")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
    assert not (tmp_path / "x.db").exists()


def test_block_spec_round_trips_and_refuses_a_non_sequence_token_count():
    spec = BlockSweepSpec(preset="bert-base", tokens=(1024,), placements=("pre_ln", "deepnorm"))
    assert BlockSweepSpec.from_json(spec.to_json()) == spec and spec.seq_len == 512
    with pytest.raises(SpecError, match="multiple of 512"):
        BlockSweepSpec(preset="bert-base", tokens=(1000,))


def test_blocks_page_shows_the_answer_and_the_breakdown(block_db, monkeypatch):
    monkeypatch.setenv("NORMSCOPE_DB", str(block_db))
    monkeypatch.setenv("NORMSCOPE_REFERENCE_DIR", str(block_db.parent / "none"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/blocks.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(m.value for m in at.markdown)
    assert "Switching LayerNorm → RMSNorm" in text
    assert len(at.get("plotly_chart")) >= 1
    assert any("Placements" in h.value for h in at.subheader)


def test_a_block_run_report_has_its_own_section_and_method_not_the_kernel_ones(block_db, tmp_path):
    out = tmp_path / "blocks.html"
    p = run_cli("report", "1", "--output", str(out), db=block_db)
    assert p.returncode == 0, p.stderr
    html = out.read_text()
    assert "<h2>Blocks: tiny-decoder (run 1)</h2>" in html
    # no kernel answer, chart or point table built from the block's points; the method is the block's own
    assert "<h2>The answer</h2>" not in html and "No timed kernel points" not in html
    assert "<h2>All points</h2>" not in html and "p50 latency vs" not in html
    assert "the whole block" in html and "Roofline" not in html


def test_a_backward_share_profiled_without_backward_attribution_is_not_shown():
    comps = {"share_pct": {"norm": 1.1, "other": 40.0}}
    old = {"mode": "fwdbwd", "extra": {"components": comps}}
    assert blocks.norm_share_pct(old) is None  # its norm share counted the forward only
    new = {"mode": "fwdbwd", "extra": {"components": {**comps, "backward_us_per_call": {"norm": 3.0}}}}
    assert blocks.norm_share_pct(new) == 1.1
    assert blocks.norm_share_pct({"mode": "fwd", "extra": {"components": comps}}) == 1.1
    assert "profiled before backward work" in blocks.share_note(old) and blocks.share_note(new) is None


def test_backward_goes_to_the_range_of_the_op_that_created_its_node():
    from types import SimpleNamespace as E

    from profilers.labs.blocks.measure import BACKWARD_PREFIX, _backward_by_component

    norm, mlp = E(name="norm", cpu_parent=None), E(name="mlp", cpu_parent=None)

    def op(name, seq, start, parent, thread=1):
        return E(name=name, sequence_nr=seq, fwd_thread=0, thread=thread, time_range=E(start=start), cpu_parent=parent)

    def node(seq, us, fwd_thread=1):
        return E(name=BACKWARD_PREFIX + "X", sequence_nr=seq, fwd_thread=fwd_thread, cpu_time_total=us, cpu_parent=None)

    events = [
        op("aten::layer_norm", 4, 1.0, norm),  # creates node 4
        op("aten::contiguous", 5, 2.0, norm),  # a no-op at the end of the norm range: number 5, no node
        op("aten::linear", 5, 3.0, mlp),  # creates node 5: the last op to start with 5
        op("aten::sum", 6, 4.0, None),  # the loss, outside every range
        node(4, 10.0),
        node(5, 20.0),
        node(6, 5.0),
        node(5, 7.0, fwd_thread=2),  # another thread's number 5: not this forward's
    ]
    assert _backward_by_component(events, cuda=False) == {"norm": 10.0, "mlp": 20.0}
