import pytest

from profilers.analysis import recommend
from profilers.analysis.compare import match_points, same_machine


def pt(variant, impl, p50, band_pct=1.0, run_id=1, tokens=4096, hidden=4096, dtype="bfloat16", mode="fwd", **kw):
    """A timed point whose p20–p80 band is ±band_pct around p50."""
    d = band_pct / 100 * p50
    base = dict(
        variant=variant,
        impl=impl,
        p50_us=p50,
        p20_us=p50 - d,
        p80_us=p50 + d,
        run_id=run_id,
        tokens=tokens,
        hidden=hidden,
        dtype=dtype,
        mode=mode,
        status="ok",
        noisy=False,
        gbps=1.0,
        roofline_pct=1.0,
        energy_mj_per_call=None,
    )
    base.update(kw)
    return base


T = recommend.Target(tokens=4096, hidden=4096)


def test_rank_orders_and_explains_in_numbers():
    pts = [pt("layernorm", "native", 100.0), pt("rmsnorm", "native", 95.0), pt("dyt", "eager", 300.0)]
    r = recommend.rank(pts, T)
    assert [c.name for c in r.candidates] == ["RMSNorm native", "LayerNorm native", "DyT eager"]
    assert r.headline == "Use RMSNorm native: faster than every other candidate by more than the ±2% margin."
    # legacy points (no rounds): the interval is the ratio ± the combined p20-p80 band (±1.4%)
    assert r.lines[0].startswith("RMSNorm native saves 5.0% of the time of LayerNorm native; 95% interval")
    assert r.lines[0].endswith("beyond the ±2% margin")
    assert "(3.16× as much)" in r.lines[1]
    assert r.decided and r.pick.name == "RMSNorm native" and "±2%" in r.interval_note


def test_a_saving_inside_the_margin_is_equivalent_not_a_lead():
    """A 0.5% saving beyond the noise (its interval excludes 1) is still no reason to switch."""
    pts = [pt("layernorm", "native", 100.0, band_pct=0.2), pt("rmsnorm", "native", 99.5, band_pct=0.2)]
    r = recommend.rank(pts, T)
    v = r.verdicts["LayerNorm native"]
    assert v.hi > v.lo > 1.0  # measurable
    assert v.kind == "equivalent" and len(r.tiers[0]) == 2
    assert "equivalent within ±2%" in r.headline and "beyond the noise" not in r.headline
    assert r.lines[0].startswith("LayerNorm native and RMSNorm native: equivalent within ±2%")
    wide = recommend.rank(pts, T, margin_pct=0.1)  # a user who cares about 0.1%: now it is a lead
    assert wide.verdicts["LayerNorm native"].kind == "slower" and wide.headline.startswith("Use RMSNorm native")


def test_equivalent_candidates_are_tied_and_the_simpler_one_is_recommended():
    pts = [
        pt("rmsnorm", "compiled", 99.0, band_pct=0.3),
        pt("rmsnorm", "native", 100.0, band_pct=0.3),
        pt("layernorm", "native", 130.0, band_pct=0.3),
    ]
    r = recommend.rank(pts, T)
    assert r.candidates[0].name == "RMSNorm compiled" and r.pick.name == "RMSNorm native"
    assert r.headline.startswith("Use RMSNorm native: equivalent within ±2% to the cheapest here, RMSNorm compiled")
    assert "simpler (torch's own operator" in r.headline
    assert [c.name for c in r.tiers[0]] == ["RMSNorm compiled", "RMSNorm native"]


def test_an_interval_across_the_margin_is_undecided_and_says_what_would_decide_it():
    pts = [pt("layernorm", "native", 100.0, band_pct=5), pt("rmsnorm", "native", 97.0, band_pct=5)]
    r = recommend.rank(pts, T)
    v = r.verdicts["LayerNorm native"]
    assert v.kind == "undecided" and v.n is None  # legacy points: no rounds to count
    assert not r.decided and "Undecided against LayerNorm native" in r.headline
    assert "narrower would decide it" in r.headline
    with pytest.raises(ValueError, match="margin"):
        recommend.rank(pts, T, margin_pct=0)


@pytest.mark.parametrize(
    ("lo", "value", "hi", "kind"),
    [
        (0.90, 0.93, 0.96, "faster"),  # wholly below 1 - 2%
        (1.03, 1.05, 1.08, "slower"),  # wholly above 1 + 2%
        (0.985, 0.991, 0.997, "equivalent"),  # inside ±2%, though it excludes 1
        (0.97, 0.985, 1.00, "undecided"),  # crosses 0.98
        (0.95, 1.0, 1.05, "undecided"),  # crosses both margins
    ],
)
def test_the_four_verdicts_on_planted_intervals(lo, value, hi, kind):
    from profilers.analysis import equivalence as eq

    v = eq.judge(value, lo, hi, 2.0, n=8)
    assert v.kind == kind and v.margin_pct == 2.0
    assert v.to_dict()["verdict"] == kind and v.to_dict()["margin_pct"] == 2.0
    if kind == "undecided":
        assert v.needed > 8 and f"{v.needed - 8} more rounds" in v.decides
    else:
        assert v.needed is None and v.decides == ""


def test_rounds_needed_follow_the_square_of_the_interval_to_the_margin():
    """Half the distance to the nearer margin: four times the rounds, if the spread stays as measured."""
    import math

    from profilers.analysis import equivalence as eq

    e, d = math.log(0.99), math.log(0.99) - math.log(0.98)  # 1% from the lower margin, on the log scale
    v = eq.judge(0.99, math.exp(e - 2 * d), math.exp(e + 2 * d), 2.0, n=10)
    assert v.kind == "undecided" and v.needed == 40
    on_edge = eq.judge(0.98, 0.97, 0.99, 2.0, n=10)  # the estimate on the margin: rounds cannot decide
    assert on_edge.needed is None and "would not decide it" in on_edge.decides
    for bad in (0, -1, 60, float("nan")):
        with pytest.raises(ValueError, match=r"the margin must be in \(0, 50\] %"):
            eq.judge(1.0, 0.9, 1.1, bad)


def test_newest_run_wins_and_nearest_shape_is_said():
    pts = [pt("rmsnorm", "native", 50.0, run_id=1, tokens=2048), pt("rmsnorm", "native", 40.0, run_id=2, tokens=2048)]
    r = recommend.rank(pts, T)
    assert r.candidates[0].value == 40.0
    assert "nearest measured, 2048×4096" in r.shape_note


def test_missing_points_suggest_the_sweep_to_run():
    r = recommend.rank([pt("rmsnorm", "native", 1.0, dtype="float32")], T, device="cuda:0")
    assert r.missing and "--dtypes bfloat16" in r.missing and "--shapes 4096x4096" in r.missing
    spec = recommend.suggest_spec(T, "cuda:0")
    assert spec.device == "cuda:0" and "liger" in spec.impls


def test_energy_ranking_uses_energy():
    pts = [
        pt("layernorm", "native", 100.0, energy_mj_per_call=385.0, energy_spread_pct=2.0),
        pt("rmsnorm", "native", 97.0, energy_mj_per_call=314.0, energy_spread_pct=2.0),
    ]
    r = recommend.rank(pts, recommend.Target(4096, 4096, metric="energy"))
    assert r.candidates[0].name == "RMSNorm native" and "of the energy per call" in r.lines[0]


@pytest.mark.parametrize(
    ("rms", "verdict"),
    [
        (82.0, "consistent with the claim"),
        (95.0, "smaller than claimed"),
        (60.0, "larger than claimed"),
        (130.0, "opposite: LayerNorm is cheaper here by more than ±2%"),
        (99.5, "not supported: equivalent within ±2% here"),
    ],
)
def test_claims_check_verdicts(rms, verdict):
    pts = [pt("layernorm", "native", 100.0), pt("rmsnorm", "native", rms)]
    (c,) = recommend.claims_check(pts, "bfloat16", "fwd")
    assert c.verdict == verdict and c.impl == "native"


def test_dyt_claim():
    pts = [
        pt("layernorm", "compiled", 100.0),
        pt("dyt", "compiled", 100.5),
        pt("layernorm", "eager", 500.0),
        pt("dyt", "eager", 300.0),
    ]
    verdicts = {c.impl: c.verdict for c in recommend.claims_check(pts, "bfloat16", "fwd")}
    assert verdicts == {
        "compiled": "not supported: equivalent within ±2% here",
        "eager": "confirmed here: faster by more than ±2%",
    }


RUN_A = {"machine": {"hostname": "h100-a", "cpu_model": "x", "gpu": {"uuid": "GPU-1"}}, "spec": {"device": "cuda:0"}}
RUN_B = {"machine": {"hostname": "a100-b", "cpu_model": "y", "gpu": {"uuid": "GPU-2"}}, "spec": {"device": "cuda:0"}}


def test_planted_20pct_slowdown_is_a_regression_and_noise_is_not():
    base = [pt("rmsnorm", "native", 100.0), pt("layernorm", "native", 100.0), pt("dyt", "eager", 100.0)]
    other = [pt("rmsnorm", "native", 120.0), pt("layernorm", "native", 104.0), pt("dyt", "eager", 80.0)]
    rows = {r.key[0]: r for r in match_points(base, other, same=True)}
    assert rows["rmsnorm"].flag == "regression" and rows["rmsnorm"].diff_pct == pytest.approx(20.0)
    assert rows["layernorm"].flag == "regression"  # 4% slower, its interval wholly beyond the ±2% margin
    (small,) = match_points(base[:1], [pt("rmsnorm", "native", 100.5, band_pct=0.2)], same=True)
    assert small.flag == "equivalent" and small.verdict.label == "equivalent within ±2%"
    (lenient,) = match_points(base[1:2], other[1:2], same=True, margin_pct=10.0)
    assert lenient.flag == "equivalent"  # a team that only cares about 10%
    assert rows["dyt"].flag == "faster"


def test_a_large_change_inside_a_wide_noise_band_is_not_flagged():
    base = [pt("rmsnorm", "native", 100.0, band_pct=15)]
    other = [pt("rmsnorm", "native", 118.0, band_pct=15)]
    (row,) = match_points(base, other, same=True)
    assert row.flag == "undecided" and row.band_pct > 18


def test_other_machines_are_compared_not_flagged():
    assert same_machine(RUN_A, RUN_A) and not same_machine(RUN_A, RUN_B)
    (row,) = match_points([pt("rmsnorm", "native", 100.0)], [pt("rmsnorm", "native", 150.0)], same=False)
    assert row.flag == "machine difference"
    assert match_points([pt("rmsnorm", "native", 1.0)], [pt("rmsnorm", "eager", 1.0)], same=True) == []


def test_two_machines_are_told_apart_by_what_differs_not_by_the_model_they_share():
    from profilers.analysis.compare import machine_differences

    h200 = {"name": "NVIDIA H200", "uuid": "GPU-aaa"}
    a = {"machine": {"hostname": "box", "cpu_model": "x", "gpu": h200}, "spec": {"device": "cuda:0"}}
    b = {"machine": {"hostname": "box", "cpu_model": "x", "gpu": {**h200, "uuid": "GPU-bbb"}}, "spec": a["spec"]}
    assert not same_machine(a, b)
    assert machine_differences(a, b) == ["NVIDIA H200 GPU-aaa vs GPU-bbb"]
    assert machine_differences(a, a) == []
    long_a = {**a, "machine": {**a["machine"], "gpu": {**h200, "uuid": "GPU-9be310f0-8b52-f484-a26b-f87802246cce"}}}
    long_b = {**a, "machine": {**a["machine"], "gpu": {**h200, "uuid": "GPU-9be310f0-8b52-0000-a26b-f87802246cce"}}}
    assert machine_differences(long_a, long_b) == ["NVIDIA H200 GPU-9be310f0-8b52-f… vs GPU-9be310f0-8b52-0…"]
    assert machine_differences(RUN_A, RUN_B) == ["host h100-a vs a100-b", "CPU x vs y", "GPU GPU-1 vs GPU-2"]
    c = {"machine": {"hostname": "box", "cpu_model": "x", "gpu": {"name": "NVIDIA H100", "uuid": "GPU-ccc"}}}
    assert machine_differences(a, {**c, "spec": a["spec"]}) == ["GPU NVIDIA H200 vs NVIDIA H100"]


def test_a_picker_names_two_gpus_of_one_model_on_one_host_apart_by_their_uuids():
    from profilers.analysis.compare import machine_labels

    def run(i, host, uuid, cpu="x", name="NVIDIA H200"):
        gpu = {"name": name, "uuid": uuid}
        return {"id": i, "machine": {"hostname": host, "cpu_model": cpu, "gpu": gpu}, "spec": {"device": "cuda:0"}}

    u1, u2 = "GPU-9be310f0-8b52-f484-a26b-f87802246cce", "GPU-9be310f0-8b52-0000-a26b-f87802246cce"
    labels = machine_labels([run(1, "box", u1), run(2, "box", u2), run(3, "box", u1), run(4, "other", u2)])
    assert labels == {
        1: "box · NVIDIA H200 · GPU-9be310f0-8b52-f…",
        2: "box · NVIDIA H200 · GPU-9be310f0-8b52-0…",
        3: "box · NVIDIA H200 · GPU-9be310f0-8b52-f…",  # one GPU, one name
        4: "other · NVIDIA H200",  # alone under its label: nothing added
    }
    # one host and GPU under two recorded CPU models: the CPU tells them apart
    labels = machine_labels([run(1, "box", u1, cpu="x"), run(2, "box", u1, cpu="y")])
    assert labels == {1: "box · NVIDIA H200 · x", 2: "box · NVIDIA H200 · y"}


def _alloc_run(run_id: int, mode: str, host: str = "box", budget: float = 100.0) -> dict:
    return {
        "id": run_id,
        "spec": {"device": "cpu", "budget_ms": budget, "warmup_ms": 20, "rounds": 7, "cpu_allocator": mode},
        "machine": {"hostname": host, "threads": 2, "cpu_allocator": {"mode": mode, "preloaded": None}},
        "versions": {"torch": "2.13"},
    }


def _alloc_point(run_id: int, variant: str, p50: float, status: str = "ok") -> dict:
    return {
        "run_id": run_id,
        "variant": variant,
        "impl": "native",
        "dtype": "float32",
        "mode": "fwd",
        "tokens": 4096,
        "hidden": 4096,
        "p50_us": p50,
        "status": status,
    }


def test_allocator_effect_is_set_beside_the_norm_choice():
    from profilers.analysis.method import allocator_effect

    runs = [_alloc_run(1, "reuse"), _alloc_run(2, "system")]
    points = [
        _alloc_point(1, "layernorm", 9000),
        _alloc_point(1, "rmsnorm", 17500),
        _alloc_point(2, "layernorm", 21500),
        _alloc_point(2, "rmsnorm", 63000),
    ]
    lines = allocator_effect(runs, points)
    assert any("LayerNorm" in x and "2.39×" in x and "slower with system" in x for x in lines), lines
    # allocator up to 3.60× (RMSNorm), norm choice up to 2.93× (system: 63000 / 21500)
    assert "up to 3.60×: more than the choice of norm, which changes it by up to 2.93×" in lines[-1]


def test_allocator_effect_needs_both_modes_on_one_machine_and_method():
    from profilers.analysis.method import allocator_effect

    points = [_alloc_point(1, "layernorm", 9000), _alloc_point(2, "layernorm", 21500)]
    assert allocator_effect([_alloc_run(1, "reuse"), _alloc_run(2, "reuse")], points) == []
    # another budget is another method: no effect is claimed
    assert allocator_effect([_alloc_run(1, "reuse"), _alloc_run(2, "system", budget=50.0)], points) == []
    # another machine: nothing matches
    assert allocator_effect([_alloc_run(1, "reuse"), _alloc_run(2, "system", host="other")], points) == []
    # a failed point has no time to compare
    bad = [_alloc_point(1, "layernorm", 9000), _alloc_point(2, "layernorm", None, "failed")]
    assert allocator_effect([_alloc_run(1, "reuse"), _alloc_run(2, "system")], bad) == []


def test_a_regression_within_how_far_reruns_move_here_is_not_flagged():
    from profilers.analysis import compare

    base, other = [pt("rmsnorm", "native", 100.0)], [pt("rmsnorm", "native", 120.0)]
    (plain,) = match_points(base, other, same=True)
    assert plain.flag == "regression" and plain.interval == "the runs' own"
    # this machine's calibrated runs moved its times ~10% (sd of log p50): a 20% change is within reach
    (calm,) = match_points(base, other, same=True, between=lambda p: 0.10)
    assert calm.flag == "undecided" and calm.interval.startswith("widened") and calm.band_pct > 20
    (quiet,) = match_points(base, other, same=True, between=lambda p: 0.01)
    assert quiet.flag == "regression"  # a quiet machine keeps the flag
    cal = {
        "levels": {"DRAM": {"baseline_p50_us": {"64x64 float32 fwd": [100.0, 110.0, 90.0]}}},
        "ratios": [{"tokens": 64, "hidden": 64, "dtype": "float32", "mode": "fwd", "level": "DRAM",
                    "ratios": [2.0, 2.0, 2.0]}],
    }  # fmt: skip
    spread = compare.p50_between_sd(cal)
    assert spread["DRAM"] == pytest.approx(0.1, rel=0.1)
    assert compare.level_lookup(spread)({"roofline_level": "L1"}) == spread["DRAM"]  # unknown level: the widest
    assert compare.p50_between_sd(None) == {} and compare.level_lookup({}) is None


def _paired(variant, p50, ratio, lo, hi, between_sd):
    """A point of a calibrated run: its ratio to LayerNorm native over shared rounds and its stored rerun part."""
    rounds = [p50 * (1 + 0.001 * (i % 3)) for i in range(7)]
    extra = {"rounds_us": rounds, "rounds_index": list(range(7))}
    if between_sd is not None and ratio != 1.0:  # a baseline carries no rerun interval of its own
        extra["rerun"] = {"between_sd_log": between_sd, "between_runs": 6, "between_source": "calibration run 1",
                          "lo": lo, "hi": hi}  # fmt: skip
    return pt(variant, "native", p50, extra=extra, ratio=ratio, ratio_lo=lo, ratio_hi=hi)


def test_a_lead_is_said_to_hold_on_a_rerun_only_where_the_rerun_interval_excludes_one():
    for between, holds in ((0.001, True), (0.2, False)):
        pts = [_paired("layernorm", 100.0, 1.0, 1.0, 1.0, between), _paired("rmsnorm", 95.0, 0.95, 0.94, 0.96, between)]
        r = recommend.rank(pts, T)
        assert r.candidates[0].name == "RMSNorm native"
        assert "rerun interval" in r.interval_note
        if holds:
            assert r.headline.startswith("Use RMSNorm native") and "a rerun keeps the lead" in r.lines[0]
        else:
            assert "a rerun on this machine may not keep its lead" in r.headline
            assert "in this run; a rerun may not agree" in r.lines[0]
        (claim,) = [c for c in recommend.claims_check(pts, "bfloat16", "fwd") if c.claim.startswith("RMSNorm is")]
        assert ("a rerun agrees" in claim.rerun) == holds
        assert claim.verdict.endswith("a rerun may not agree") != holds
    bare = [_paired("layernorm", 100.0, 1.0, 1.0, 1.0, None), _paired("rmsnorm", 95.0, 0.95, 0.94, 0.96, None)]
    r = recommend.rank(bare, T)
    assert r.headline.startswith("Use RMSNorm native") and "no rerun interval" in r.interval_note
    (claim,) = [c for c in recommend.claims_check(bare, "bfloat16", "fwd") if c.claim.startswith("RMSNorm is")]
    assert claim.rerun == "N/A: no calibration of this machine"
