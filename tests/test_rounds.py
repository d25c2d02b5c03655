"""Measurement v2 without hardware: interleaved rounds, paired-ratio CIs, adaptive stopping, disturbance."""

import random

import pytest

from profilers.analysis import noise, stats
from profilers.measure.machine.disturbance import CpuProbe, VisitWindow
from profilers.measure.sweep.rounds import run_rounds

CLEAN = VisitWindow(0.01, 0.0, 0.0)


def _visits(true_us, jitter, seed=0, disturbed=lambda i, r, n: False):
    """A visit function: candidate i's samples around true_us[i] with multiplicative jitter."""
    rng = random.Random(seed)
    calls = {"n": 0, "log": []}

    def visit(i, r):
        calls["n"] += 1
        calls["log"].append((i, r))
        bad = disturbed(i, r, calls["n"])
        scale = 10.0 if bad else 1.0
        samples = [true_us[i] * scale * (1 + rng.uniform(-jitter, jitter)) for _ in range(5)]
        return samples, VisitWindow(0.5 if bad else 0.01, 0.0, 0.0, reasons=("waited 50%",) if bad else ())

    return visit, calls


def test_paired_ratio_finds_the_true_ratio_with_a_tight_interval():
    visit, _ = _visits([100.0, 180.0], jitter=0.01)
    g = run_rounds(2, visit, baseline=0, rounds=7, ci_target_pct=3.0, seed=1)
    iv = g.intervals[1]
    assert iv.lo <= 1.8 <= iv.hi and iv.half_width_pct < 3.0
    assert g.rounds == 7 and g.unstable == [False, False]


def test_adaptive_stopping_adds_rounds_only_while_an_interval_is_too_wide():
    tight, _ = _visits([100.0, 150.0], jitter=0.005)
    assert run_rounds(2, tight, rounds=5, ci_target_pct=3.0, seed=2).rounds == 5
    noisy, calls = _visits([100.0, 150.0], jitter=0.6, seed=3)
    g = run_rounds(2, noisy, rounds=5, ci_target_pct=1.0, seed=2)
    assert g.rounds == 10  # doubled, no more
    assert calls["n"] == 2 * 10
    assert g.unstable[1]  # still wider than ±1%


def test_added_rounds_visit_only_the_baseline_and_the_candidates_still_too_wide():
    rng = random.Random(5)
    log = []

    def visit(i, r):  # candidate 1 is steady, candidate 2 swings ±60%
        log.append((i, r))
        jitter = (0.002, 0.002, 0.6)[i]
        return [(100.0, 150.0, 200.0)[i] * (1 + rng.uniform(-jitter, jitter)) for _ in range(3)], CLEAN

    g = run_rounds(3, visit, baseline=0, rounds=5, ci_target_pct=3.0, seed=6)
    assert g.rounds == 10 and g.unstable == [False, False, True]
    added = {i for i, r in log if r >= 5}
    assert added == {0, 2}  # the steady candidate stopped after the first five rounds
    assert [len(c.visits) for c in g.candidates] == [10, 5, 10]
    # its ratio pairs its five rounds with the baseline's first five, here and wherever points are compared
    assert g.intervals[1].lo <= 1.5 <= g.intervals[1].hi and g.intervals[1].half_width_pct < 3.0
    point = {"run_id": 1, "device": "cpu", "tokens": 8, "hidden": 8, "dtype": "float32", "mode": "fwd"}
    a = {**point, "variant": "layernorm", "impl": "native", "extra": {"rounds_us": g.candidates[0].round_medians_us}}
    b = {**point, "variant": "rmsnorm", "impl": "native", "extra": {"rounds_us": g.candidates[1].round_medians_us}}
    r = noise.ratio_between(a, b)
    assert r.method == "paired rounds" and r.value == pytest.approx(g.intervals[1].value)


def test_rounds_pair_per_process_and_round_number():
    def pt(rounds, procs=None, index=None):
        extra = {"rounds_us": rounds}
        extra.update({"rounds_process": procs} if procs else {})
        extra.update({"rounds_index": index} if index else {})
        return {"extra": extra}

    # older runs store no round numbers: the order within each process
    a, b, procs = noise.shared_rounds(pt([1, 2, 3, 4, 5], [0, 0, 0, 1, 1]), pt([10, 20, 30, 40], [0, 0, 1, 1]))
    assert (a, b, procs) == ([1, 2, 4, 5], [10, 20, 30, 40], [0, 0, 1, 1])
    # stored round numbers: a candidate that skipped rounds 2-3 pairs with the baseline's rounds 0, 1, 4
    a, b, procs = noise.shared_rounds(pt([1, 2, 5], index=[0, 1, 4]), pt([10, 20, 30, 40, 50], index=[0, 1, 2, 3, 4]))
    assert (a, b, procs) == ([1, 2, 5], [10, 20, 50], None)
    assert noise.shared_rounds(pt([1, 2], [0, 1]), pt([1, 2])) is None  # one ran in processes, the other not


def test_a_baseline_that_fails_in_an_added_round_leaves_pairs_made_on_round_numbers():
    """The group's baseline fails in round 6: the next candidate becomes the baseline although it had left the
    added rounds after round 4; ratios must still pair round r with round r."""
    seen = []

    def visit(i, r):
        if i == 0 and r >= 6:
            return None
        value = (100.0, 150.0, 200.0)[i] * (1 + 0.5 * ((r * 7 + i) % 5 - 2) / 2 if i == 2 else 1)
        seen.append((i, r, value))
        return [value + r * 1e-3] * 3, CLEAN  # the round is readable from the value

    g = run_rounds(3, visit, baseline=0, rounds=5, ci_target_pct=3.0, seed=6)
    assert g.baseline == 1
    rounds = {k: [v.round for v in c.visits] for k, c in enumerate(g.candidates)}
    assert rounds[1] != list(range(len(rounds[1])))  # the new baseline has a gap: it skipped added rounds
    base = {v.round: v.median_us for v in g.candidates[1].visits}
    cand = [v for v in g.candidates[2].visits if v.round in base]
    expected = noise.paired_ratio([v.median_us for v in cand], [base[v.round] for v in cand], noise.seed_for(6, 2))
    assert g.intervals[2].value == pytest.approx(expected.value)


def test_a_baseline_that_moves_with_the_machine_does_not_hold_back_a_tight_comparison():
    # every round the machine (or the memory placement) scales both candidates alike: ratio 1.5 throughout
    scale = [1.0, 1.3, 0.8, 1.2, 0.9, 1.25, 0.85]

    def visit(i, r):
        return [(100.0, 150.0)[i] * scale[r % len(scale)]] * 3, CLEAN

    g = run_rounds(2, visit, baseline=0, rounds=7, ci_target_pct=3.0, seed=4)
    assert g.intervals[0].half_width_pct > 3.0  # the baseline's own median is wide, and stored so
    assert g.intervals[1].half_width_pct < 0.01 and g.rounds == 7 and g.unstable == [False, False]
    # alone in its group, the same candidate is judged by its own median: rounds doubled, then unstable
    alone = run_rounds(1, lambda i, r: visit(0, r), rounds=7, ci_target_pct=3.0, seed=4)
    assert alone.rounds == 14 and alone.unstable == [True]


def test_each_round_visits_every_candidate_in_a_seeded_order():
    visit, calls = _visits([1.0, 2.0, 3.0], jitter=0.0)
    run_rounds(3, visit, rounds=4, ci_target_pct=50, seed=9)
    orders = [[i for i, r in calls["log"] if r == k] for k in range(4)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # shuffled between rounds
    visit2, calls2 = _visits([1.0, 2.0, 3.0], jitter=0.0)
    run_rounds(3, visit2, rounds=4, ci_target_pct=50, seed=9)
    assert calls2["log"] == calls["log"]  # the same seed, the same order


def test_disturbed_visit_is_requeued_at_the_end_of_the_round_then_kept_and_flagged():
    # candidate 1's first visit in round 0 is disturbed (run-queue wait 0.5): re-queued, then clean
    visit, calls = _visits([100.0, 200.0], jitter=0.0, disturbed=lambda i, r, n: i == 1 and r == 0 and n <= 2)
    g = run_rounds(2, visit, rounds=3, ci_target_pct=50, seed=0)
    assert g.candidates[1].retried == 1 and g.candidates[1].disturbed == 0
    round0 = [i for i, r in calls["log"] if r == 0]
    assert round0[-1] == 1 and round0.count(1) == 2  # the retry came last in its round
    # always disturbed: two retries, then kept and counted
    visit, _ = _visits([100.0, 200.0], jitter=0.0, disturbed=lambda i, r, n: i == 1)
    g = run_rounds(2, visit, rounds=3, ci_target_pct=50, seed=0, retries=2)
    assert g.candidates[1].retried == 6 and g.candidates[1].disturbed == 3


def test_bootstrap_is_seeded_and_reproducible():
    rng = random.Random(0)
    vals = [rng.gauss(1.0, 0.1) for _ in range(30)]
    a = noise.bootstrap_median_ci(vals, seed=42)
    assert a == noise.bootstrap_median_ci(vals, seed=42)  # the same seed, the same interval, in any process
    assert a[1] <= a[0] <= a[2] and a[2] - a[1] > 0
    assert noise.seed_for("run", 3, "layernorm") == noise.seed_for("run", 3, "layernorm")  # not Python's hash


def test_t_quantiles_and_the_expanded_tails_match_their_tables():
    for df, t in ((1, 12.706), (2, 4.303), (6, 2.447), (29, 2.045)):
        assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=1e-3)
    assert noise.expanded_alpha(7) == pytest.approx(0.0041, abs=1e-4)
    assert noise.expanded_alpha(1000) == pytest.approx(0.025, abs=3e-4)  # many values: the plain percentiles


def test_a_95_percent_interval_of_few_rounds_holds_the_true_ratio_95_percent_of_the_time():
    """The plain percentile bootstrap of 7 rounds held the true ratio about 87% of the time; expanded, ≥ 95%."""
    rng = random.Random(11)
    held = 0
    for trial in range(300):
        base = [100 * rng.lognormvariate(0, 0.04) for _ in range(7)]
        cand = [b * 2 * rng.lognormvariate(0, 0.04) for b in base]
        r = noise.paired_ratio(cand, base, seed=trial)
        held += r.lo <= 2.0 <= r.hi
    assert held / 300 >= 0.94


def test_a_difference_is_measurable_exactly_when_the_interval_excludes_one():
    assert not noise.Ratio(1.02, 0.99, 1.04, "paired rounds").measurable
    assert noise.Ratio(1.05, 1.01, 1.08, "paired rounds").measurable
    same = noise.paired_ratio([100, 101, 99, 100], [100, 100, 100, 100], seed=1)
    assert not same.measurable


def test_points_timed_in_the_same_rounds_are_compared_pairwise():
    base = {"run_id": 1, "device": "cpu", "tokens": 8, "hidden": 8, "dtype": "float32", "mode": "fwd"}
    a = {**base, "variant": "layernorm", "impl": "native", "p50_us": 100.0, "p20_us": 50.0, "p80_us": 150.0}
    b = {**base, "variant": "rmsnorm", "impl": "native", "p50_us": 200.0, "p20_us": 100.0, "p80_us": 300.0}
    # drifting machine: both candidates slow down together, their ratio stays 2
    a["extra"] = {"rounds_us": [100.0, 300.0, 150.0, 500.0, 120.0]}
    b["extra"] = {"rounds_us": [200.0, 600.0, 300.0, 1000.0, 240.0]}
    r = noise.ratio_between(a, b)
    assert r.method == "paired rounds" and r.value == pytest.approx(2.0) and r.half_width_pct < 1
    other_run = {**b, "run_id": 2}
    assert noise.ratio_between(a, other_run).method == "unpaired rounds"
    legacy_a = {k: v for k, v in a.items() if k != "extra"}
    legacy_b = {**legacy_a, "variant": "rmsnorm", "p50_us": 120.0, "p20_us": 60.0, "p80_us": 180.0}
    band = noise.ratio_between(legacy_a, legacy_b)
    assert band.method == "p20-p80 band" and not band.measurable  # 20% inside ±71%: no measurable difference


class FakeProc:
    """A planted /proc: two threads, /proc/stat jiffies; ``advance`` moves the machine forward."""

    def __init__(self):
        self.sched = {"1": [0, 0], "2": [0, 0]}
        self.stat = [0] * 8  # user nice system idle iowait irq softirq steal

    def read(self, path):
        if path == "/proc/stat":
            return "cpu " + " ".join(map(str, self.stat)) + "\n"
        tid = path.split("/")[4]
        return f"{self.sched[tid][0]} {self.sched[tid][1]} 5\n"

    def listdir(self, path):
        return list(self.sched)

    def advance(self, cpu_ns, wait_ns, busy_jiffies, steal_jiffies, idle_jiffies):
        for t in self.sched.values():
            t[0] += cpu_ns
            t[1] += wait_ns
        self.stat[0] += busy_jiffies
        self.stat[7] += steal_jiffies
        self.stat[3] += idle_jiffies


def _probe(proc, own_cpu_s):
    clock = {"t": 0.0}
    own = {"s": 0.0}
    probe = CpuProbe(reader=proc, clock=lambda: clock["t"], own_cpu_s=lambda: own["s"], clock_ticks=100)
    return probe, clock, own


def test_cpu_probe_flags_run_queue_wait_other_processes_and_steal():
    proc = FakeProc()
    probe, clock, own = _probe(proc, 0.0)
    token = probe.begin()
    # one second: each thread ran 0.5 s and waited 0.5 s (wait share 0.5); the machine was busy 2 cores,
    # of which this process used 1 core-second; 5% stolen
    proc.advance(cpu_ns=500_000_000, wait_ns=500_000_000, busy_jiffies=200, steal_jiffies=10, idle_jiffies=0)
    clock["t"] += 1.0
    own["s"] += 1.0
    v = probe.end(token)
    assert v.runq_wait_share == pytest.approx(0.5)
    assert v.others_cores == pytest.approx(1.0)
    assert v.steal_share == pytest.approx(10 / 210)
    assert v.disturbed and len(v.reasons) == 3


def test_cpu_probe_passes_a_clean_window():
    proc = FakeProc()
    probe, clock, own = _probe(proc, 0.0)
    token = probe.begin()
    proc.advance(cpu_ns=990_000_000, wait_ns=10_000_000, busy_jiffies=200, steal_jiffies=0, idle_jiffies=0)
    clock["t"] += 1.0
    own["s"] += 2.0
    v = probe.end(token)
    assert not v.disturbed and v.runq_wait_share == pytest.approx(0.01)


def test_cpu_probe_without_proc_says_not_measured():
    class Broken:
        def read(self, path):
            raise FileNotFoundError(path)

        def listdir(self, path):
            raise FileNotFoundError(path)

    probe = CpuProbe(reader=Broken())
    v = probe.end(probe.begin())
    assert not v.disturbed and "not measured" in v.not_measured


class _FakeGpu:
    def __init__(self, reasons):
        self.reasons = reasons

    def clock_slowdown(self):
        from profilers.sensors import Reading

        return Reading(self.reasons)


def test_gpu_probe_records_a_power_cap_but_flags_only_slowdowns_the_workload_did_not_cause():
    from profilers.measure.machine.disturbance import GpuProbe

    capped = GpuProbe(_FakeGpu("power cap")).end(None)
    assert capped.gpu_slowdown == "power cap" and not capped.disturbed  # a heavy kernel at 700 W: its own cost
    hot = GpuProbe(_FakeGpu("power cap, thermal (hardware)")).end(None)
    assert hot.disturbed and hot.reasons == ("GPU clocks slowed: thermal (hardware)",)
    assert not GpuProbe(_FakeGpu("")).end(None).disturbed
    assert "not measured" in GpuProbe(None).end(None).not_measured


def test_a_point_capped_in_every_round_says_so_without_being_called_busy():
    from types import SimpleNamespace

    from profilers.measure.sweep.group import _disturbance_summary

    v = VisitWindow(0.01, 0.0, 0.0, gpu_slowdown="power cap")
    cand = SimpleNamespace(visits=[SimpleNamespace(verdict=v)] * 7, retried=0, disturbed=0)
    out = _disturbance_summary(cand)
    assert out["power_capped_visits"] == 7 and "power cap in 7 of 7 rounds" in out["summary"]
    assert "slowed" not in out["summary"]
