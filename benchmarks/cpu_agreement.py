"""Where does a rerun of the default CPU sweep land, quiet and with a competitor? (issue 25's check)

First calibrates the machine into a fresh store (``python -m profilers calibrate``: K short runs spread over
minutes, the between-run spread per working-set level), then runs the default CPU sweep (`python -m profilers
run`) in back-to-back pairs: ``--pairs-quiet`` pairs with nothing else running, and ``--pairs-busy`` pairs with
a competitor on the same machine alternating busy and idle at random (``--busy-share`` of the time busy, one
core), its kind alternating per pair between memory-bound (streaming copies of 256 MB arrays) and
compute-bound (matrix products in cache). For every paired ratio stored `ok` in run 1 (each candidate against
its group's baseline), it counts:

- run 2's ratio inside run 1's *rerun* interval (``extra.rerun``: where a rerun is expected with 95%
  probability) — goal ≥ 90%, quiet and with a competitor;
- the median rerun half-width — goal ≤ 5% quiet, ≤ 8% with a competitor (an interval that holds anything is
  no answer);
- silent misses: both runs `ok` with disjoint rerun intervals (two confident, different answers) — goal ≤ 1
  in 100 ratios;

and, for contrast, run 2 inside run 1's own 95% interval (which covers run 1's moment, not a rerun's).

The analysis refits the stored calibration from its first K runs (``--refit 6,10,16``: the calibration a K-run
`calibrate` would have made, with its wall time) and recomputes run 1's and run 2's rerun intervals under two
models: ``state`` (the between-run spread within a memory state) and ``bandwidth`` (each calibrated
comparison's ratio regressed on the copy bandwidth its group was probed at; run 2 is held to run 1's interval
at the bandwidth run 2 measured). It also quotes the half-width a decision rests on (over every bandwidth the
calibration saw), and checks the refit of all runs against the intervals the sweeps stored. Also
prints the points stored plain `ok` in a busy run at more than 2× their quiet p50, and every sweep's wall
time (goal: the default sweep ≤ 60 s on an idle machine; the calibration ≤ 5 minutes).

Takes the whole machine for ~35-40 minutes at the defaults: run it with nothing else on the CPUs.

    .venv/bin/python benchmarks/cpu_agreement.py [--pairs-quiet 10] [--pairs-busy 6] [--busy-share 0.5]
        [--kinds memory,compute] [--calibration-runs 16] [--refit 6,10,16] [--db PATH (reuse a calibrated store)]
        [--analyze DB]
        [--cpu-pages base] [--cpu-placement fixed] [--rounds accurate] [--processes 3] [--show-points]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.analysis import rerun  # noqa: E402
from profilers.analysis.noise import Ratio  # noqa: E402
from profilers.store import Store  # noqa: E402

COMPETITORS = {
    # one core of matrix products on a 256×256 array: cache-resident, compute-bound
    "compute": r"""
import random, sys, time
import numpy as np
rng = random.Random(int(sys.argv[2]))
share = float(sys.argv[1])
a = np.random.rand(256, 256)
while True:
    if rng.random() < share:
        end = time.perf_counter() + rng.uniform(0.2, 1.0)
        while time.perf_counter() < end:
            a = a @ a
            a /= np.abs(a).max() or 1.0
    else:
        time.sleep(rng.uniform(0.2, 1.0))
""",
    # one core streaming 256 MB copies: far beyond the caches, memory-bandwidth-bound
    "memory": r"""
import random, sys, time
import numpy as np
rng = random.Random(int(sys.argv[2]))
share = float(sys.argv[1])
src = np.ones(32 * 1024 * 1024)
dst = np.empty_like(src)
while True:
    if rng.random() < share:
        end = time.perf_counter() + rng.uniform(0.2, 1.0)
        while time.perf_counter() < end:
            np.copyto(dst, src)
    else:
        time.sleep(rng.uniform(0.2, 1.0))
""",
}

EXTRA_ARGS: list[str] = []  # passed to every sweep (e.g. --cpu-pages base)
TIMED = ("ok", "imprecise", "unstable")


def calibrate(db: Path, runs: int) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "profilers", "calibrate", "--db", str(db), "--runs", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"calibration failed: {p.stderr[-2000:]}")
    print(f"calibration: {runs} runs in {wall:.0f} s (goal ≤ 300 s)")
    print(p.stdout.rstrip(), flush=True)
    return wall


def sweep(db: Path, label: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "profilers", "run", "--db", str(db), "--label", label, *EXTRA_ARGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        sys.exit(f"sweep failed: {p.stderr[-2000:]}")
    with Store(db) as s:
        return s.list_runs(kind="kernels")[0]["id"], time.perf_counter() - t0


def points(db: Path, run_id: int) -> dict[tuple, dict]:
    with Store(db) as s:
        pts = s.points(run_id)
    return {(p["variant"], p["impl"], p["dtype"], p["mode"], p["tokens"], p["hidden"]): p for p in pts}


def pair(db: Path, i: int, kind: str | None, share: float) -> tuple[float, float]:
    proc = None
    if kind:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.Popen(
            [sys.executable, "-c", COMPETITORS[kind], str(share), str(random.randrange(1 << 30))],
            env=env,
            start_new_session=True,
        )
    try:
        _, w1 = sweep(db, f"{LABEL} {i} {kind or 'quiet'} run 1")
        _, w2 = sweep(db, f"{LABEL} {i} {kind or 'quiet'} run 2")
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return w1, w2


LABEL = "agreement pair"


def stored_pairs(db: Path, plan: list[str | None]) -> list[tuple[str | None, int, int, float, float]]:
    """(kind, run 1, run 2, wall 1, wall 2) per pair: by the sweeps' labels, or, in a store of unlabelled
    sweeps, by their order against ``plan`` (the kinds of the pairs, None for quiet)."""
    with Store(db) as s:
        runs = sorted((r for r in s.list_runs(kind="kernels") if r["status"] == "completed"), key=lambda r: r["id"])
    wall = {r["id"]: _seconds(r) for r in runs}
    labelled: dict[int, dict[int, int]] = {}
    kinds: dict[int, str | None] = {}
    for r in runs:
        parts = (r.get("label") or "").split()
        if (r.get("label") or "").startswith(LABEL) and len(parts) == 6:
            i, kind, k = int(parts[2]), parts[3], int(parts[5])
            labelled.setdefault(i, {})[k] = r["id"]
            kinds[i] = None if kind == "quiet" else kind
    if labelled:
        return [(kinds[i], d[1], d[2], wall[d[1]], wall[d[2]]) for i, d in sorted(labelled.items()) if len(d) == 2]
    ids = [r["id"] for r in runs]
    return [(kind, ids[2 * i], ids[2 * i + 1], wall[ids[2 * i]], wall[ids[2 * i + 1]])
            for i, kind in enumerate(plan) if 2 * i + 1 < len(ids)]  # fmt: skip


def _seconds(run: dict) -> float:
    from datetime import datetime

    a, b = run.get("created_at"), run.get("finished_at")
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() if a and b else float("nan")


def is_candidate(p: dict) -> bool:
    """A timed point with a ratio to a baseline other than itself."""
    return p["status"] in TIMED and p.get("ratio") is not None and p["ratio_baseline"] != f"{p['variant']} {p['impl']}"


def rerun_of(p: dict, cal: dict, model: str) -> rerun.Rerun | None:
    """Point ``p``'s rerun interval against its baseline, recomputed from calibration ``cal`` under ``model``
    (``state`` or ``bandwidth``); None where the calibration gives it no between-run part."""
    if p.get("ratio_lo") is None or p.get("ratio_hi") is None or not p.get("rounds"):
        return None
    r = Ratio(p["ratio"], p["ratio_lo"], p["ratio_hi"], "paired rounds")
    rr = rerun.point_rerun(r, p, cal, p["rounds"], bandwidth=model == "bandwidth")
    return rr if rr.between is not None else None


def state_index(p: dict, cal: dict) -> int | None:
    states = cal.get("memory_states") or []
    if len(states) < 2:
        return 0 if states else None
    return rerun.state_of(rerun.memory_copy_gbps(p.get("extra")), states)


def half(lo: float, hi: float, value: float) -> float:
    return 100 * (hi - lo) / (2 * value)


class Tally:
    """Run 2 against run 1's rerun interval: the one for run 2's memory state (the same as run 1's, or the
    other), as the rerun itself would report its state; under the bandwidth model, at run 2's bandwidth."""

    def __init__(self, cal: dict, model: str) -> None:
        self.cal, self.model = cal, model
        self.compared = self.inside_rerun = self.inside_run = self.silent = self.no_rerun = 0
        self.cross = self.cross_inside = 0
        self.run2_ok = self.inside_ok = 0
        self.spanned = self.spanned_inside = self.same_inside = 0
        self.by_level: dict[str, list[float]] = {}
        self.decide_by_level: dict[str, list[float]] = {}
        self.half_widths: list[float] = []
        self.cross_widths: list[float] = []
        self.run1_not_ok = 0
        self.fitted = self.fitted_inside = 0
        self.fitted_widths: list[float] = []

    def add(self, a: dict, b: dict, show: bool, name: str) -> None:
        """Run 1's point ``a`` against run 2's ``b`` (the same comparison)."""
        if not is_candidate(a) or not is_candidate(b):
            return
        if a["status"] != "ok":
            self.run1_not_ok += 1
            return
        rr = rerun_of(a, self.cal, self.model)
        if rr is None:
            self.no_rerun += 1
            return
        self.compared += 1
        rr2 = rerun_of(b, self.cal, self.model)
        k1, k2 = state_index(a, self.cal), state_index(b, self.cal)
        two = rr.other is not None and k1 is not None
        crossed = two and k2 is not None and k2 != k1
        probes2 = rerun.memory_copy_gbps(b.get("extra"))
        held = bool(rr.bandwidth and probes2)
        if held and k2 is not None and str(k2) in rr.bandwidth["states"]:
            lo, hi = rerun.at_bandwidth(rr, statistics.geometric_mean(probes2), k2)
        elif held and k2 is None:  # run 2's group spanned both states: at either probe's bandwidth, in either
            ends = [rerun.at_bandwidth(rr, g, int(k)) for k in rr.bandwidth["states"] for g in probes2]
            lo, hi = min(e[0] for e in ends), max(e[1] for e in ends)
        elif crossed:  # run 2 was timed in the other state: where run 1 said a rerun there would land
            lo, hi = rr.other["lo"], rr.other["hi"]
        elif two and k2 is None:  # run 2's group spanned both states (or none was named): either
            lo, hi = rr.lo_any, rr.hi_any
        else:
            lo, hi = rr.lo, rr.hi
        held = held and (k2 is None or str(k2) in rr.bandwidth["states"])
        self.run2_ok += b["status"] == "ok"
        self.inside_ok += b["status"] == "ok" and lo <= b["ratio"] <= hi
        inside = lo <= b["ratio"] <= hi
        if held:
            self.fitted += 1
            self.fitted_inside += inside
            self.fitted_widths.append(half(lo, hi, a["ratio"]))
        self.inside_rerun += inside
        self.inside_run += a["ratio_lo"] <= b["ratio"] <= a["ratio_hi"]
        width = half(lo, hi, a["ratio"])
        level = a.get("roofline_level") or "?"
        if crossed:
            self.cross += 1
            self.cross_inside += inside
            self.cross_widths.append(width)
        elif (two or held) and k2 is None:
            self.spanned += 1
            self.spanned_inside += inside
        else:
            self.same_inside += inside
            self.half_widths.append(width)
            self.by_level.setdefault(level, []).append(width)
        self.decide_by_level.setdefault(level, []).append(half(rr.lo_any, rr.hi_any, a["ratio"]))
        silent = False
        if b["status"] == "ok" and rr2 is not None:
            (l1, h1), (l2, h2) = (rr.lo_any, rr.hi_any), (rr2.lo_any, rr2.hi_any)
            silent = l2 > h1 or h2 < l1
        self.silent += silent
        if show or not inside or silent:
            where = f" (run 2 in the other state: {rr.other['state']})" if crossed else ""
            print(
                f"  {name:<44} {a['ratio']:.3f} rerun [{lo:.3f}, {hi:.3f}]{where}  run 2 {b['ratio']:.3f} "
                f"({b['status']}){'' if inside else '  OUTSIDE'}{'  SILENT MISS' if silent else ''}"
            )

    def line(self, label: str, half_goal: float) -> str:
        if not self.compared:
            return f"{label}: no ratio stored ok with a rerun interval in run 1 ({self.no_rerun} without one)"
        n = self.compared
        inside = 100 * self.inside_rerun / n
        levels = ", ".join(f"{lv} ±{statistics.median(w):.1f}% ({len(w)})" for lv, w in sorted(self.by_level.items()))
        decide = ", ".join(f"{lv} ±{statistics.median(w):.1f}%" for lv, w in sorted(self.decide_by_level.items()))
        same = (
            f"within one state {self.same_inside}/{len(self.half_widths)} inside, median rerun half-width "
            f"±{statistics.median(self.half_widths):.1f}% (goal ≤ "
            f"{half_goal:g}%; by level: {levels}), widest ±{max(self.half_widths):.1f}%"
            if self.half_widths
            else "no ratio compared within one state"
        )
        if self.spanned:
            same += (
                f"; {self.spanned} against a run 2 whose group spanned both states (held to either state's "
                f"interval: {self.spanned_inside} inside)"
            )
        cross = (
            f"; {self.cross} compared across memory states ({self.cross_inside} inside the other state's interval, "
            f"median half-width ±{statistics.median(self.cross_widths):.1f}%)"
            if self.cross
            else "; none across memory states"
        )
        held = (
            f"held at run 2's bandwidth: {self.fitted} ({self.fitted_inside} inside, median half-width "
            f"±{statistics.median(self.fitted_widths):.1f}%)"
            if self.fitted
            else "none held at run 2's bandwidth"
        )
        return (
            f"{label}: {n} ratios ok in run 1 — run 2 inside run 1's rerun interval {self.inside_rerun}/{n} "
            f"({inside:.0f}%, goal ≥ 90%) [inside run 1's own 95% interval {self.inside_run}/{n} "
            f"({100 * self.inside_run / n:.0f}%)]; of run 2's ratios stored ok, {self.inside_ok}/{self.run2_ok} "
            f"inside; {same}{cross}; {held}; median half-width a decision rests "
            f"on (any calibrated state and bandwidth): {decide}; silent misses {self.silent}/{n} "
            f"({100 * self.silent / n:.1f}%, goal ≤ 1%); left out: {self.run1_not_ok} not ok in run 1, "
            f"{self.no_rerun} without a rerun interval"
        )


def blowups(busy: list[dict], clean: list[dict]) -> list[str]:
    """Points stored as plain ok in a busy run whose p50 is more than 2× the clean (quiet) p50."""
    clean_p50: dict[tuple, float] = {}
    for run in clean:
        for k, p in run.items():
            if p["status"] in TIMED and p.get("p50_us"):
                clean_p50[k] = min(clean_p50.get(k, float("inf")), p["p50_us"])
    out = []
    for run in busy:
        for k, p in run.items():
            if p["status"] == "ok" and k in clean_p50 and p["p50_us"] > 2 * clean_p50[k]:
                out.append(f"{k}: {p['p50_us']:.0f} µs vs quiet {clean_p50[k]:.0f} µs")
    return out


def statuses(run: dict) -> str:
    c = [p["status"] for p in run.values() if is_candidate(p)]
    return ", ".join(f"{s} {c.count(s)}" for s in TIMED if c.count(s))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs-quiet", type=int, default=10, help="back-to-back run pairs with nothing else running")
    ap.add_argument("--pairs-busy", type=int, default=6, help="run pairs beside a competitor (kinds alternate)")
    ap.add_argument("--busy-share", type=float, default=0.5, help="the competitor's busy share of the time")
    ap.add_argument("--kinds", default="memory,compute", help="competitor kinds, alternating per busy pair")
    ap.add_argument("--calibration-runs", type=int, default=16, help="runs of the calibration measured (3-16)")
    ap.add_argument("--refit", default="6,10,16", help="refit the calibration from its first K runs, for each K")
    ap.add_argument("--db", help="a store already calibrated on this machine (skips the calibration)")
    ap.add_argument("--analyze", metavar="DB", help="measure nothing: read the pairs a run of this benchmark stored")
    ap.add_argument("--cpu-pages", choices=("huge", "base"), help="the sweeps' CPU page mode (default: the CLI's)")
    ap.add_argument("--cpu-placement", choices=("round", "fixed"), help="the sweeps' CPU placement")
    ap.add_argument("--rounds", help="the sweeps' rounds: a number or quick|default|accurate (default: the CLI's)")
    ap.add_argument("--processes", type=int, help="each sweep spread over N fresh processes (default: the CLI's, 1)")
    ap.add_argument("--show-points", action="store_true", help="print every compared ratio, not only the misses")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    if bad := [k for k in kinds if k not in COMPETITORS]:
        sys.exit(f"unknown competitor kind {bad[0]!r}: choose from {', '.join(COMPETITORS)}")
    if a.pairs_quiet < 0 or a.pairs_busy < 0 or a.pairs_quiet + a.pairs_busy == 0:
        sys.exit("--pairs-quiet and --pairs-busy leave nothing to run: give one of them a positive count")
    try:
        refits = sorted({int(k) for k in a.refit.split(",") if k.strip()})
    except ValueError:
        sys.exit(f"--refit {a.refit!r} is not a comma list of run counts: e.g. --refit 6,10,16")
    if not refits or min(refits) < 3:
        sys.exit(f"--refit {a.refit!r}: each count must be at least 3 (a fit needs runs to spare)")
    if a.pairs_busy and not kinds:
        sys.exit("--kinds is empty: name memory, compute or both")
    for flag, value in (("--cpu-pages", a.cpu_pages), ("--cpu-placement", a.cpu_placement), ("--rounds", a.rounds)):
        if value:
            EXTRA_ARGS.extend([flag, value])
    if a.processes:
        EXTRA_ARGS.extend(["--processes", str(a.processes)])
    t_start = time.perf_counter()
    plan = [None] * a.pairs_quiet + [kinds[i % len(kinds)] for i in range(a.pairs_busy)]
    if a.analyze:
        db = Path(a.analyze)
    else:
        if a.db:
            db = Path(a.db)
        else:
            db = Path(tempfile.mkdtemp()) / "agreement.db"
            calibrate(db, a.calibration_runs)
        for i, kind in enumerate(plan):
            w1, w2 = pair(db, i + 1, kind, a.busy_share)
            what = f"a {kind}-bound competitor ~{a.busy_share:.0%} busy" if kind else "quiet"
            print(f"pair {i + 1}/{len(plan)} ({what}): {w1:.0f} s and {w2:.0f} s", flush=True)
    analyze(db, plan, a.busy_share, a.show_points, refits)
    print(f"whole benchmark: {time.perf_counter() - t_start:.0f} s; store: {db}")


def calibrations(db: Path, refits: list[int]) -> list[tuple[str, dict]]:
    """The store's calibration refitted from its first K runs for each K in ``refits`` (as K-run calibrations
    would have been), with each one's wall time; the stored calibration alone where its runs were not kept."""
    with Store(db) as s:
        runs = [r for r in s.list_runs(kind="calibration") if r["status"] == "completed"]
        if not runs:
            sys.exit(f"{db} holds no completed calibration: run the benchmark without --analyze/--db first")
        run = runs[0]
        doc, inputs = s.artifact(run["id"], "calibration"), s.artifact(run["id"], "calibration_runs")
    if not inputs:
        print(f"calibration run {run['id']} kept no per-run inputs: analysed with its stored fit only")
        return [(f"stored calibration ({run['spec']['runs']} runs)", doc)]
    out = []
    for k in [k for k in refits if k <= len(inputs)]:
        fit = rerun.calibrate(inputs[:k], f"refit of run {run['id']} from {k} runs", doc["rounds"], doc["method"])
        wall = _between(inputs[0]["run"]["created_at"], inputs[k - 1]["run"]["finished_at"])
        states = ", ".join(f"{st['lo_gbps']:.0f}-{st['hi_gbps']:.0f}" for st in fit["memory_states"])
        lv = fit["levels"].get("DRAM") or {}
        sd = lv.get("between_sd_log")
        bsd = lv.get("bandwidth_sd_log")
        print(
            f"calibration from {k} runs: first run start to run {k}'s end {wall:.0f} s; states {states} GB/s; "
            f"DRAM between-run sd within a state {100 * sd:.2f}% on {lv.get('dof')} df"
            if sd is not None
            else f"calibration from {k} runs: no DRAM level",
            end="",
        )
        print(
            f", at the bandwidth measured {100 * bsd:.2f}% on {lv.get('bandwidth_dof')} df" if bsd is not None else ""
        )
        for row in fit["ratios"]:
            bw = row.get("bandwidth")
            if row["level"] == "DRAM" and bw:
                print(
                    f"  {row['variant']} {row['impl']} {row['tokens']}x{row['hidden']}: slope on log copy bandwidth "
                    f"{bw['slope']:+.2f} ± {bw['slope_se']:.2f} (se), residual sd {100 * math.sqrt(bw['s2']):.2f}% "
                    f"on {bw['df']} df; without it, within-state sd {100 * (row['within_state_sd_log'] or 0):.2f}%"
                )
        out.append((f"calibration from {k} runs", fit))
    return out


def _between(a: str | None, b: str | None) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() if a and b else float("nan")


def check_stored(db: Path, pairs: list, cal: dict) -> str:
    """The refit of every calibrated run under the bandwidth model against the intervals the sweeps stored."""
    same = differ = 0
    for _, r1, r2, *_ in pairs:
        for run in (r1, r2):
            for p in points(db, run).values():
                stored = (p.get("extra") or {}).get("rerun") or {}
                if not is_candidate(p) or stored.get("lo") is None:
                    continue
                rr = rerun_of(p, cal, "bandwidth")
                ok = rr is not None and math.isclose(rr.lo, stored["lo"], rel_tol=1e-9)
                ok = ok and math.isclose(rr.hi, stored["hi"], rel_tol=1e-9)
                same, differ = same + ok, differ + (not ok)
    return f"recomputed intervals equal to the stored ones: {same}/{same + differ}"


def analyze(db: Path, plan: list[str | None], share: float, show: bool, refits: list[int]) -> None:
    pairs = stored_pairs(db, plan)
    fits = calibrations(db, refits)
    print(check_stored(db, pairs, fits[-1][1]))
    runs = [(kind, points(db, r1), points(db, r2), w1, w2) for kind, r1, r2, w1, w2 in pairs]
    for i, (kind, one, two, *_) in enumerate(runs):
        what = f"a {kind}-bound competitor ~{share:.0%} busy" if kind else "quiet"
        print(f"pair {i + 1}/{len(runs)} ({what}): run 1 {statuses(one)}; run 2 {statuses(two)}")
    n_quiet = sum(1 for k, *_ in runs if not k)
    walls_quiet = [w for k, _, _, w1, w2 in runs if not k for w in (w1, w2)]
    if walls_quiet:
        print(
            f"default CPU sweep wall time, quiet (stored start to end): median {statistics.median(walls_quiet):.0f} "
            f"s, {min(walls_quiet):.0f}-{max(walls_quiet):.0f} s over {len(walls_quiet)} runs (goal ≤ 60 s)"
        )
    for label, cal in fits:
        for model in ("state", "bandwidth"):
            print(f"\n== {label}, {model} model")
            quiet, busy = Tally(cal, model), Tally(cal, model)
            by_kind: dict[str, Tally] = {}
            last = (label, model) == (fits[-1][0], "bandwidth")
            for kind, one, two, *_ in runs:
                for key in sorted(set(one) & set(two)):
                    name = f"{key[0]} {key[1]} {key[4]}x{key[5]} {key[2]} {key[3]}"
                    if kind:
                        busy.add(one[key], two[key], show and last, name)
                        by_kind.setdefault(kind, Tally(cal, model)).add(one[key], two[key], False, name)
                    else:
                        quiet.add(one[key], two[key], show and last, name)
            if n_quiet:
                print(quiet.line(f"quiet, {n_quiet} pairs", 5.0))
            if len(runs) > n_quiet:
                print(busy.line(f"with a competitor, {len(runs) - n_quiet} pairs", 8.0))
                for kind, t in by_kind.items():
                    print("  " + t.line(f"{kind}-bound", 8.0))
    quiet_runs = [r for k, one, two, *_ in runs if not k for r in (one, two)]
    busy_runs = [r for k, one, two, *_ in runs if k for r in (one, two)]
    if quiet_runs and busy_runs:
        bad = blowups(busy_runs, quiet_runs)
        print(f"\npoints stored plain ok in a busy run at more than 2× their quiet p50: {len(bad)}")
        for line in bad:
            print("  " + line)


if __name__ == "__main__":
    main()
