"""Rerun intervals: planted variance components, the machine's calibration, and runs that use it."""

import json
import math
import random
import statistics

import pytest
from conftest import run_cli

from profilers.analysis import rerun
from profilers.analysis.noise import Ratio, paired_ratio
from profilers.report import plots
from profilers.spec import CalibrationSpec, SpecError
from profilers.store import Store


def _run(rng: random.Random, true: float, between_sd: float, round_sd: float, rounds: int = 7) -> Ratio:
    """One run's paired ratio: a between-run effect shared by its rounds, round noise on each."""
    b = rng.gauss(0, between_sd)
    ref = [100.0 * math.exp(rng.gauss(0, round_sd / 2)) for _ in range(rounds)]
    other = [r * true * math.exp(b + rng.gauss(0, round_sd)) for r in ref]
    return paired_ratio(other, ref, seed=rng.randrange(1 << 30))


def test_a_between_run_effect_widens_the_rerun_interval_and_not_the_runs():
    r = Ratio(0.8, 0.78, 0.82, "paired rounds")
    quiet = rerun.rerun_interval(r, rerun.Between(0.0, 10, "planted"), rounds=7)
    moving = rerun.rerun_interval(r, rerun.Between(0.05, 10, "planted"), rounds=7)
    assert (r.lo, r.hi) == (0.78, 0.82)  # the run's own interval is what it was
    assert moving.lo < quiet.lo < r.value < quiet.hi < moving.hi
    few = rerun.rerun_interval(r, rerun.Between(0.05, 3, "planted"), rounds=7)
    assert few.lo < moving.lo and few.hi > moving.hi  # resting on 3 runs, the same sd is less certain


def test_the_between_run_sd_is_recovered_from_planted_runs_and_the_rerun_interval_holds_95():
    rng = random.Random(3)
    planted_b, planted_e = 0.04, 0.02
    estimates, held = [], 0
    trials = 300
    for _ in range(trials):
        runs = [_run(rng, 0.8, planted_b, planted_e) for _ in range(8)]
        b = rerun.between_from_runs([math.log(x.value) for x in runs], [rerun.within_sd_log(x, 7) for x in runs], "t")
        estimates.append(b.sd_log)
        first, second = _run(rng, 0.8, planted_b, planted_e), _run(rng, 0.8, planted_b, planted_e)
        iv = rerun.rerun_interval(first, b, rounds=7)
        held += iv.lo <= second.value <= iv.hi
    assert statistics.median(estimates) == pytest.approx(planted_b, rel=0.25)
    assert held / trials >= 0.93, held / trials


def test_a_two_state_process_set_is_flagged_and_one_state_is_not():
    assert rerun.process_clusters([100, 101, 99.5, 131, 130], within_sd_log=0.01)
    assert "two groups (3 and 2)" in rerun.process_clusters([100, 101, 99.5, 131, 130], within_sd_log=0.01)
    assert rerun.process_clusters([100, 101, 99.5, 102, 100.5], within_sd_log=0.01) is None
    assert rerun.process_clusters([100, 101], within_sd_log=0.01) is None  # two cannot split into states


def test_a_baseline_outside_the_calibrated_range_says_the_machine_changed_state():
    key = rerun.shape_key(64, 256, "float32", "fwd")
    level = {"baseline_p50_us": {key: [10.0, 10.4, 10.2]}}
    assert rerun.state_changed(10.3, level, key) is None
    why = rerun.state_changed(14.0, level, key)
    assert why and "changed state" in why and "10.0-10.4" in why
    assert rerun.state_changed(14.0, level, rerun.shape_key(64, 256, "bfloat16", "fwd")) is None  # not calibrated


def test_a_decision_is_stated_only_when_the_rerun_interval_excludes_one():
    r = Ratio(0.9, 0.88, 0.92, "paired rounds")
    wide = rerun.rerun_interval(r, rerun.Between(0.08, 6, "planted"), 7)
    narrow = rerun.rerun_interval(r, rerun.Between(0.005, 6, "planted"), 7)
    assert "a rerun may not agree" in rerun.decision("RMSNorm", "LayerNorm", r, wide)
    assert "faster than LayerNorm here" in rerun.decision("RMSNorm", "LayerNorm", r, narrow)
    assert "no calibration" in rerun.decision("RMSNorm", "LayerNorm", r, None)


def test_processes_for_a_target_follow_the_two_level_variance():
    assert rerun.processes_for(5.0, 0.0, 0.01, 7) == 1  # quiet between runs: one process of 7 rounds is enough
    more = rerun.processes_for(5.0, 0.03, 0.01, 7)
    assert more is not None and more > rerun.processes_for(8.0, 0.03, 0.01, 7)
    assert rerun.processes_for(0.5, 0.2, 0.1, 7) is None  # beyond 16 processes


def test_bad_calibration_specs_are_one_line():
    with pytest.raises(SpecError, match="3-16"):
        CalibrationSpec(runs=2)
    with pytest.raises(SpecError, match="--device cpu"):
        CalibrationSpec(device="cuda")


TINY = ["--runs", "3", "--spread-s", "0", "--rounds", "3", "--budget-ms", "3", "--shapes", "64x256"]


@pytest.mark.slow
def test_calibrate_then_a_run_states_its_rerun_intervals_and_the_report_shows_the_calibration(tmp_path):
    db = tmp_path / "r.db"
    p = run_cli("calibrate", *TINY, "--json", db=db)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert doc["levels"] and all(lv["runs"] == 3 for lv in doc["levels"].values())
    # every candidate of the default CPU sweep against LayerNorm native (DyT has no native kernel)
    assert {r["variant"] + " " + r["impl"] for r in doc["ratios"]} == {
        "layernorm eager",
        "layernorm compiled",
        "rmsnorm eager",
        "rmsnorm native",
        "rmsnorm compiled",
        "dyt eager",
        "dyt compiled",
    }
    with Store(db) as s:
        kept = s.artifact(doc["run_id"], "calibration_runs")
    assert len(kept) == 3 and all(p["extra"].get("memory_state") for p in kept[0]["points"] if p["status"] == "ok")
    assert rerun.calibrate(kept, doc["source"], doc["rounds"], doc["method"])["ratios"] == doc["ratios"]
    run = run_cli(
        "run", "--shapes", "64x256", "--variants", "layernorm,rmsnorm", "--impls", "native", "--rounds", "3",
        "--budget-ms", "3", "--warmup-ms", "1", db=db,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "rerun intervals: between-run spread from calibration run 1" in run.stderr
    with Store(db) as s:
        (kernels,) = s.list_runs(kind="kernels")
        rms = next(p for p in s.points(kernels["id"]) if p["variant"] == "rmsnorm")
        got = rms["extra"]["rerun"]
        assert got["between_source"].startswith("calibration run 1") and got["lo"] <= rms["ratio_lo"]
        assert got["hi"] >= rms["ratio_hi"]
        frame = plots.points_frame(s.points([kernels["id"]]), {kernels["id"]: "run 2"})
    _, table = plots.head_to_head(frame, ("layernorm", "native"), ("rmsnorm", "native"))
    (row,) = table.to_dict("records")
    assert "(calibrated)" in row["rerun"] and row["rerun_lo"] <= row["lo"] and row["rerun_hi"] >= row["hi"]
    out = tmp_path / "report.html"
    assert run_cli("report", "1", "2", "-o", str(out), db=db).returncode == 0
    assert "Calibration of this machine (run 1)" in out.read_text()


def test_a_run_without_calibration_says_how_to_get_one(tmp_path):
    db = tmp_path / "r.db"
    p = run_cli("run", "--shapes", "64x256", "--variants", "layernorm,rmsnorm", "--impls", "native",
                "--rounds", "3", "--budget-ms", "3", "--warmup-ms", "1", db=db)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "this machine has no calibration: run `python -m profilers calibrate`" in p.stderr
    with Store(db) as s:
        rms = next(p for p in s.points(1) if p["variant"] == "rmsnorm")
        assert rms["extra"]["rerun"]["between_sd_log"] is None  # N/A, never a 0 that looks like a measurement


@pytest.mark.parametrize("rounds", [2, 3, 7, 30])
def test_the_runs_own_error_is_read_back_at_any_number_of_rounds(rounds):
    r = Ratio(1.1, 1.0, 1.2, "paired rounds")
    w = rerun.within_sd_log(r, rounds)
    assert 0 < w < math.log(1.2 / 1.0)
    iv = rerun.rerun_interval(r, None, rounds)
    assert iv.lo <= r.lo and iv.hi >= r.hi


def _result(variant, p50, ratio, lo, hi, dtype="float32"):
    from profilers.store.records import PointResult

    r = PointResult(variant, "native", "cpu", dtype, 64, 256, "fwd", "ok", None)
    r.p50_us, r.ratio, r.ratio_lo, r.ratio_hi, r.rounds, r.roofline_level = p50, ratio, lo, hi, 7, "L2"
    return r


def test_a_group_is_judged_against_the_calibration_only_where_it_was_measured_alike():
    from profilers.measure.sweep.runner import judge_group

    cal = {
        "source": "planted",
        "levels": {"L2": {"between_sd_log": 0.02, "runs": 6, "baseline_p50_us": {"64x256 float32 fwd": [10.0, 10.5]}}},
    }
    group = [_result("layernorm", 14.0, 1.0, 1.0, 1.0), _result("rmsnorm", 12.0, 0.86, 0.84, 0.88)]
    judge_group(group, cal, same_method=True)
    assert [r.status for r in group] == ["unstable", "unstable"] and "changed state" in group[1].error
    assert "rerun" not in group[0].extra and group[1].extra["rerun"]["between_sd_log"] == 0.02
    other = [_result("layernorm", 14.0, 1.0, 1.0, 1.0), _result("rmsnorm", 12.0, 0.86, 0.84, 0.88)]
    judge_group(other, cal, same_method=False)  # e.g. another thread count: its time says nothing of the state
    assert [r.status for r in other] == ["ok", "ok"] and other[1].extra["rerun"]["lo"] < 0.84
    bf16 = [
        _result("layernorm", 14.0, 1.0, 1.0, 1.0, "bfloat16"),
        _result("rmsnorm", 12.0, 0.86, 0.84, 0.88, "bfloat16"),
    ]
    judge_group(bf16, cal, same_method=True)  # no calibrated bf16 time: nothing to say about the state
    assert [r.status for r in bf16] == ["ok", "ok"]


def test_memory_states_split_only_where_two_clusters_stand_apart():
    two = rerun.memory_states([40, 45, 50, 52, 48, 70, 90, 95, 100, 93, 44, 51])
    assert len(two) == 2 and two[0]["hi_gbps"] < 60 < two[1]["lo_gbps"] == pytest.approx(70)
    assert len(rerun.memory_states([40, 45, 50, 52, 48, 44, 51])) == 1  # 16% apart at most: one state
    assert rerun.memory_states([]) == []
    assert rerun.state_of([47, 49], two) == 0 and rerun.state_of([95, 92], two) == 1
    assert rerun.state_of([47, 95], two) is None  # the group began in one state and ended in the other
    assert rerun.state_of([200], two) is None  # a state the calibration never saw


def _cal_doc(k, ratio, gbps):
    """One calibration run's export: LayerNorm native and RMSNorm native at 4096×4096 (DRAM), probed at gbps."""
    rng = random.Random(k)
    base = [1000.0 * math.exp(rng.gauss(0, 0.01)) for _ in range(7)]
    rms = [b * ratio * math.exp(rng.gauss(0, 0.01)) for b in base]

    def point(variant, rounds):
        s = sorted(rounds)
        return {
            "variant": variant, "impl": "native", "dtype": "float32", "tokens": 4096, "hidden": 4096,
            "mode": "fwd", "status": "ok", "p50_us": s[3], "roofline_level": "DRAM", "bytes_moved": 1 << 27,
            "extra": {"rounds_us": rounds, "memory_state": {"copy_gbps": [gbps, gbps * 1.02]}},
        }  # fmt: skip

    return {"run": {"copy_gbps": gbps}, "points": [point("layernorm", base), point("rmsnorm", rms)]}


def test_a_calibration_in_two_memory_states_judges_a_run_within_its_own_state():
    # the 2-core VM: copy ~48 GB/s and RMSNorm native ÷ LayerNorm native ~2.45; ~95 GB/s and ~1.45
    docs = [_cal_doc(k, r, g) for k, (r, g) in enumerate([(2.45, 48), (1.45, 95), (2.48, 50), (1.44, 93),
                                                          (2.42, 47), (1.47, 97)])]  # fmt: skip
    cal = rerun.calibrate(docs, "planted", 7)
    assert len(cal["memory_states"]) == 2
    lv = cal["levels"]["DRAM"]
    assert lv["between_sd_log_all"] > 0.2 > 0.02 > lv["between_sd_log"]  # the states, not the runs, move it
    assert math.exp(lv["state_shift_log"]) == pytest.approx(2.45 / 1.45, rel=0.05)
    r = Ratio(1.45, 1.42, 1.48, "paired rounds")
    point = {
        "roofline_level": "DRAM", "ratio_baseline": "layernorm native", "tokens": 4096, "hidden": 4096,
        "dtype": "float32", "mode": "fwd", "variant": "rmsnorm", "impl": "native",
        "extra": {"memory_state": {"copy_gbps": [94.0, 96.0]}},
    }  # fmt: skip
    iv = rerun.point_rerun(r, point, cal, 7)
    assert iv.hi / iv.lo < 1.15 and "memory state 2 of 2" in iv.state  # narrow within the run's state
    assert iv.other["signed"] and iv.other["lo"] > 2.2 and iv.other["hi"] < 2.75  # the other state, this way up
    assert iv.excludes_one and "[2." in rerun.interval_text(iv)
    dyt = {**point, "variant": "dyt"}  # not calibrated itself: the level's shift, either way
    wide = rerun.point_rerun(r, dyt, cal, 7)
    assert not wide.other["signed"] and wide.other["lo"] < 1.0 < wide.other["hi"] and not wide.excludes_one
    assert "a rerun may not agree" in rerun.decision("DyT", "LayerNorm", r, wide)
    straddled = {**point, "extra": {"memory_state": {"copy_gbps": [48.0, 96.0]}}}
    assert "changed memory state during this group: copy bandwidth 48 → 96" in rerun.memory_state_change(straddled, cal)
    unseen = {**point, "extra": {"memory_state": {"copy_gbps": [20.0, 21.0]}}}
    assert "did not see" in rerun.memory_state_change(unseen, cal)
    assert rerun.memory_state_change(point, cal) is None
    assert rerun.between_for(straddled, cal).sd_log == lv["between_sd_log_all"]  # no state: every run's spread


def test_a_group_that_changed_memory_state_is_never_ok():
    from profilers.measure.sweep.runner import judge_group

    docs = [_cal_doc(k, r, g) for k, (r, g) in enumerate([(2.45, 48), (1.45, 95), (2.48, 50), (1.44, 93)])]
    cal = rerun.calibrate(docs, "planted", 7)
    group = [_result("layernorm", 1000.0, 1.0, 1.0, 1.0), _result("rmsnorm", 1450.0, 1.45, 1.42, 1.48)]
    for res in group:
        res.roofline_level = "DRAM"
        res.extra["memory_state"] = {"copy_gbps": [49.0, 94.0]}
    judge_group(group, cal, same_method=True)
    assert [r.status for r in group] == ["unstable", "unstable"] and "changed memory state" in group[1].error


def test_the_run_page_is_offered_the_calibrations_processes():
    from profilers.report.calibration import recommended_processes

    doc = {"source": "calibration run 3", "levels": {"L3": {"processes_for": {"5.0": 2}},
                                                       "DRAM": {"processes_for": {"5.0": 4}}}}  # fmt: skip
    n, why = recommended_processes(doc, 5.0)
    assert n == 4 and "DRAM 4, L3 2" in why and "calibration run 3" in why
    doc["levels"]["DRAM"]["processes_for"]["5.0"] = None
    n, why = recommended_processes(doc, 5.0)
    assert n is None and "more than 16 processes at DRAM" in why
    assert recommended_processes(None)[0] is None


def _bandwidth_docs(n, seed, slope=0.8, noise=0.004):
    """``n`` calibration runs in two memory states whose RMSNorm native ÷ LayerNorm native ratio follows the
    copy bandwidth within each state (log ratio = state's intercept + slope × log bandwidth + noise)."""
    rng = random.Random(seed)
    runs = []
    for k in range(n):
        mid, a = (48.0, 0.9) if k % 3 else (95.0, 0.37)
        g = mid * math.exp(rng.uniform(-0.08, 0.08))
        ratio = math.exp(a + slope * (math.log(g) - math.log(mid)) + rng.gauss(0, noise))
        runs.append((ratio, g))
    return runs, [_cal_doc(k, r, g) for k, (r, g) in enumerate(runs)]


def test_within_a_state_the_ratio_is_fitted_on_copy_bandwidth_and_a_rerun_is_held_at_the_bandwidth_it_measured():
    _, docs = _bandwidth_docs(16, seed=3)
    cal = rerun.calibrate(docs, "planted", 7)
    row = next(r for r in cal["ratios"] if r["variant"] == "rmsnorm")
    fit, lv = row["bandwidth"], cal["levels"]["DRAM"]
    assert fit["slope"] == pytest.approx(0.8, abs=0.15) and fit["df"] == 16 - 2 - 1
    # the spread the slope leaves is a fraction of the spread within a state without it
    assert lv["bandwidth_sd_log"] < 0.5 * lv["between_sd_log"] and lv["bandwidth_dof"] == 13
    point = {
        "roofline_level": "DRAM", "ratio_baseline": "layernorm native", "tokens": 4096, "hidden": 4096,
        "dtype": "float32", "mode": "fwd", "variant": "rmsnorm", "impl": "native",
        "extra": {"memory_state": {"copy_gbps": [45.0, 45.9]}},
    }  # fmt: skip
    x1 = math.exp(0.9 + 0.8 * (0.5 * (math.log(45.0) + math.log(45.9)) - math.log(48.0)))
    r = Ratio(x1, x1 * 0.99, x1 * 1.01, "paired rounds")
    iv = rerun.point_rerun(r, point, cal, 7)
    flat = rerun.point_rerun(r, point, cal, 7, bandwidth=False)
    assert iv.bandwidth and iv.bandwidth["state"] == 0 and flat.bandwidth is None
    assert iv.half_width_pct < flat.half_width_pct  # narrower once the bandwidth is known
    assert rerun.at_bandwidth(iv, math.exp(iv.bandwidth["x1"]), 0) == pytest.approx((iv.lo, iv.hi))
    # a rerun at 50 GB/s: the interval moves along the slope and holds where the planted ratio lands
    at50 = math.exp(0.9 + 0.8 * (math.log(50.0) - math.log(48.0)))
    lo, hi = rerun.at_bandwidth(iv, 50.0, 0)
    assert lo > iv.lo and lo < at50 < hi and not iv.lo <= at50 <= iv.hi
    # in the other state, at its own bandwidth: the fitted intercepts, signed
    olo, ohi = rerun.at_bandwidth(iv, 95.0, 1)
    assert olo < math.exp(0.37) < ohi < 1.6 and iv.other["signed"] and iv.other["at_gbps"] > 85
    # a decision holds over every bandwidth the calibration saw, so it is never narrower than the point's own
    assert iv.lo_any <= min(iv.lo, lo, olo) and iv.hi_any >= max(iv.hi, hi, ohi)
    assert "at this run's copy bandwidth (45 GB/s" in rerun.interval_text(iv)
    stored = rerun.rerun_of_point({"ratio": r.value, "extra": {"rerun": iv.to_dict()}})
    assert stored.bandwidth == iv.bandwidth and stored.lo_any == pytest.approx(iv.lo_any)
    pt = {
        **point,
        "ratio": r.value,
        "ratio_lo": r.lo,
        "ratio_hi": r.hi,
        "extra": {**point["extra"], "rerun": iv.to_dict()},
    }
    assert rerun.rerun_for(r, pt).hi == iv.hi  # the point's own ratio: its interval at its bandwidth
    another = Ratio(1.1, 1.05, 1.15, "paired rounds")  # another pair of the run: the spread without the slope
    assert rerun.rerun_for(another, pt).bandwidth is None


def test_reruns_planted_on_the_bandwidth_model_land_in_their_interval_about_95_percent_of_the_time():
    point = {
        "roofline_level": "DRAM", "ratio_baseline": "layernorm native", "tokens": 4096, "hidden": 4096,
        "dtype": "float32", "mode": "fwd", "variant": "rmsnorm", "impl": "native",
    }  # fmt: skip
    w = rerun.within_sd_log(Ratio(1.0, math.exp(-0.01), math.exp(0.01), "paired rounds"), 7)
    rng = random.Random(5)
    inside = total = 0
    for seed in range(6):  # over calibrations, as each machine gets its own
        _, docs = _bandwidth_docs(16, seed=20 + seed)
        cal = rerun.calibrate(docs, "planted", 7)
        for _ in range(100):
            g1, g2 = (48.0 * math.exp(rng.uniform(-0.08, 0.08)) for _ in range(2))
            # each run: the model at its bandwidth, the between-run noise planted, its own rounds' error
            y1, y2 = (0.9 + 0.8 * math.log(g / 48.0) + rng.gauss(0, 0.004) + rng.gauss(0, w) for g in (g1, g2))
            r = Ratio(math.exp(y1), math.exp(y1 - 0.01), math.exp(y1 + 0.01), "paired rounds")
            iv = rerun.point_rerun(r, {**point, "extra": {"memory_state": {"copy_gbps": [g1, g1]}}}, cal, 7)
            lo, hi = rerun.at_bandwidth(iv, g2, 0)
            inside += lo <= math.exp(y2) <= hi
            total += 1
    assert 0.9 <= inside / total <= 0.995, inside / total


def test_a_calibration_keeps_its_runs_inputs_and_refits_from_the_first_of_them():
    _, docs = _bandwidth_docs(10, seed=4)
    kept = rerun.calibration_inputs(docs)
    assert set(kept[0]["points"][0]["extra"]) == {"rounds_us", "memory_state"}
    assert rerun.calibrate(kept, "planted", 7)["ratios"] == rerun.calibrate(docs, "planted", 7)["ratios"]
    six = rerun.calibrate(kept[:6], "planted", 7)
    assert next(r for r in six["ratios"] if r["variant"] == "rmsnorm")["bandwidth"]["df"] == 3
    assert rerun.bandwidth_fit([0.1, 0.2], [0.01, 0.01], [1.0, 1.1], [0, 0]) is None  # no degree of freedom left
    assert rerun.bandwidth_fit([0.1, 0.2, 0.3], [0.0] * 3, [1.0, 1.0, 1.0], [0, 0, 0]) is None  # bandwidth never moved


def test_a_bandwidth_fit_with_under_eight_degrees_of_freedom_is_not_used_and_the_report_says_so():
    from profilers.report.calibration import level_rows

    point = {
        "roofline_level": "DRAM", "ratio_baseline": "layernorm native", "tokens": 4096, "hidden": 4096,
        "dtype": "float32", "mode": "fwd", "variant": "rmsnorm", "impl": "native",
        "extra": {"memory_state": {"copy_gbps": [47.0, 47.5]}},
    }  # fmt: skip
    r = Ratio(2.45, 2.42, 2.48, "paired rounds")
    _, docs = _bandwidth_docs(11, seed=4)  # 11 runs in two states: 11 - 2 - 1 = 8 df, the fewest used
    used = rerun.calibrate(docs, "planted", 7)
    assert used["levels"]["DRAM"]["bandwidth_dof"] == rerun.MIN_BANDWIDTH_DF == 8
    assert rerun.point_rerun(r, point, used, 7).bandwidth is not None
    ten = rerun.calibrate(docs[:10], "planted", 7)  # 7 df: the fit's spread too poorly known
    lv = ten["levels"]["DRAM"]
    assert lv["bandwidth_dof"] == 7 and lv["bandwidth_sd_log"] is not None
    iv = rerun.point_rerun(r, point, ten, 7)
    assert iv.bandwidth is None and iv == rerun.point_rerun(r, point, ten, 7, bandwidth=False)
    (row,) = [x for x in level_rows(ten) if x["level"] == "DRAM"]
    assert row["at the copy bandwidth measured"] == "not used: 7 df, under 8 (calibrate with more runs)"
    (row,) = [x for x in level_rows(used) if x["level"] == "DRAM"]
    assert row["at the copy bandwidth measured"].endswith("(1 comparison fitted, 8 df)"), row
