"""Reports, CSV/Parquet exports and reference runs, through the CLI where a user touches them."""

import json
import re

import pandas as pd
import pytest
from conftest import import_shipped, run_cli, sweep

from profilers.report.document import build, chromium, to_pdf
from profilers.store import Store, reference

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def store_with_run(tmp_path_factory):
    db = tmp_path_factory.mktemp("rep") / "results.db"
    p = run_cli(*sweep("64x256,128x512", "layernorm,rmsnorm,dyt", "eager,native", "--trace", "--label", EVIL), db=db)
    assert p.returncode == 0, p.stderr
    return db


def test_report_is_one_offline_file_with_charts_and_provenance(store_with_run, tmp_path):
    out = tmp_path / "r.html"
    p = run_cli("report", "1", "-o", str(out), "--title", f"Client {EVIL}", db=store_with_run)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", text), "no external scripts"
    assert not re.search(r"<link[^>]+href=[\"']https?:", text), "no external stylesheets"
    assert "Plotly.newPlot" in text and text.count('class="fig"') >= 4
    assert "plotly.js" in text.lower()  # the library itself is inline
    for needle in ("Provenance", "Method", "torch", "cpu_blocks", "The answer", "Bytes-moved model"):
        assert needle in text
    assert EVIL not in text  # escaped everywhere, titles and figure JSON included
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_report_rejects_unknown_runs(store_with_run, tmp_path):
    p = run_cli("report", "42", "-o", str(tmp_path / "x.html"), db=store_with_run)
    assert p.returncode == 2 and "no run 42" in p.stderr and not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_points_export_round_trips(store_with_run, tmp_path, fmt):
    out = tmp_path / f"points.{fmt}"
    p = run_cli("export", "1", "-o", str(out), db=store_with_run)
    assert p.returncode == 0, p.stderr
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    with Store(store_with_run) as s:
        pts = s.points(1)
    assert len(back) == len(pts)
    for row, p in zip(back.to_dict("records"), pts):
        assert row["variant"] == p["variant"] and row["impl"] == p["impl"] and row["tokens"] == p["tokens"]
        if p["p50_us"] is None:
            assert pd.isna(row["p50_us"])
        else:
            assert row["p50_us"] == pytest.approx(p["p50_us"])
        assert json.loads(row["extra_json"]) == p["extra"]


def test_report_decides_at_the_margin_it_is_given_and_refuses_a_bad_one(store_with_run, tmp_path):
    default, wide = tmp_path / "d.html", tmp_path / "w.html"
    assert run_cli("report", "1", "-o", str(default), db=store_with_run).returncode == 0
    p = run_cli("report", "1", "-o", str(wide), "--margin-pct", "40", db=store_with_run)
    assert p.returncode == 0, p.stderr
    assert "Verdicts at a margin of ±2%" in default.read_text() and "±40%" not in default.read_text()
    assert "Verdicts at a margin of ±40%" in wide.read_text()
    for bad in ("0", "-1", "75", "nan"):
        out = tmp_path / f"bad{bad}.html"
        p = run_cli("report", "1", "-o", str(out), "--margin-pct", bad, db=store_with_run)
        assert p.returncode == 2 and "--margin-pct" in p.stderr and "(0, 50]" in p.stderr, (bad, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_shipped_h200_fp16_forward_calls_its_0_9_percent_difference_equivalent_not_a_lead(tmp_path):
    """The fp16 forward reference: compiled RMSNorm vs compiled LayerNorm differ by 0.9%, an interval inside ±2%."""
    from profilers.analysis import equivalence as eq
    from profilers.analysis import recommend
    from profilers.report.kernels import questions

    with Store(tmp_path / "r.db") as s:
        run_id = import_shipped(s, tmp_path, "h200-2026-11-27-fp16-fwd.json")
        run, points = s.get_run(run_id), s.points(run_id)
        (q,) = questions([run], points)
        r = recommend.rank(points, q["target"], device=q["device"])
        html = build(s, [run_id])
    tie = r.verdicts["LayerNorm compiled"]
    assert tie.kind == eq.EQUIVALENT and 0.5 < 100 * (tie.value - 1) < 1.5, tie
    assert r.tiers[0][:2] == [r.candidates[0], r.candidates[1]]  # tied, not led
    assert "equivalent within ±2% to LayerNorm compiled" in r.headline and "faster than every" not in r.headline
    assert "equivalent within ±2%" in html
    # a margin too tight for the interval makes it a lead again, said as such
    tight = recommend.rank(points, q["target"], device=q["device"], margin_pct=0.5)
    assert tight.verdicts["LayerNorm compiled"].kind == eq.SLOWER


def test_reference_sync_is_idempotent_and_skips_bad_files(store_with_run, tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    assert run_cli("export", "1", "-o", str(ref / "h100.json"), db=store_with_run).returncode == 0
    (ref / "broken.json").write_text('{"format": "normscope-run", "schema_version": 1, "run": {}, "points": []}')
    with Store(tmp_path / "user.db") as s:
        new, problems = reference.sync(s, ref)
        assert len(new) == 1 and len(problems) == 1 and "broken.json" in problems[0]
        run = s.get_run(new[0])
        assert reference.is_reference(run) and run["source"] == "reference:h100.json"
        assert reference.sync(s, ref)[0] == []  # already there
        assert len(s.list_runs()) == 1


def test_pdf_export(store_with_run, tmp_path):
    html = tmp_path / "r.html"
    with Store(store_with_run) as s:
        html.write_text(build(s, [1]))
    if chromium() is None:
        assert "needs Chromium" in to_pdf(html, tmp_path / "r.pdf")
        return
    assert to_pdf(html, tmp_path / "r.pdf") is None
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_names_launch_bound_points_with_their_launch_time(tmp_path):
    """The shipped H200 forward+backward run: 7 points at 8192×4096 take longer to launch than to run."""
    with Store(tmp_path / "r.db") as s:
        html = build(s, [import_shipped(s, tmp_path, "h200-2026-11-27-bf16-fwdbwd.json")])
    assert "7 points launch-bound on the measured host" in html
    assert "launch (µs, host)" in html and "cuda_event_flush_queued" in html


def test_head_to_head_says_where_a_rerun_is_expected_for_ratios_over_rounds():
    from profilers.analysis.noise import ratio_between
    from profilers.report import plots

    def pt(variant, rounds, extra=True):
        s = sorted(rounds)
        return {
            "run_id": 1, "dtype": "float32", "mode": "fwd", "tokens": 64, "hidden": 128, "device": "cpu",
            "variant": variant, "impl": "native", "status": "ok", "block": None, "cache_state": "warm",
            "p20_us": s[1], "p50_us": s[len(s) // 2], "p80_us": s[-2], "run_name": "run 1",
            "extra": {"rounds_us": rounds} if extra else {},
        }  # fmt: skip

    ln = pt("layernorm", [100.0, 104.0, 98.0, 101.0, 99.0, 103.0, 100.0])
    rms = pt("rmsnorm", [90.0, 95.0, 87.0, 92.0, 88.0, 94.0, 91.0])
    _, table = plots.head_to_head(pd.DataFrame([ln, rms]), ("layernorm", "native"), ("rmsnorm", "native"))
    lo, hi = ratio_between(ln, rms).rerun_range
    assert table["rerun"].iloc[0].endswith(f"{lo:.3f}-{hi:.3f}") and lo < table["lo"].iloc[0]
    # points without rounds (the older band rule) get no such sentence
    _, table = plots.head_to_head(
        pd.DataFrame([pt("layernorm", [100.0] * 3, False), pt("rmsnorm", [90.0] * 3, False)]),
        ("layernorm", "native"),
        ("rmsnorm", "native"),
    )
    assert table["rerun"].iloc[0] == ""
