"""Do two runs of the default CPU sweep agree, on a busy machine and on an idle one?

Runs `python -m profilers run` (the default CPU sweep) twice back to back while a competitor process on the
same machine alternates busy and idle at random (about 30% busy, one core of matrix products), then twice
with no competitor. Prints, per paired ratio (each candidate against its group's baseline), both runs'
values and 95% intervals, and the goals:

- ≥ 90% of paired ratios agree within 5% between the two runs;
- ≥ 90% of run 2's ratios fall inside run 1's intervals (an honest 95% interval holds another run's value
  only about 83% of the time by chance alone, see ``interval_coverage.py``: also counted against run 1's
  rerun range, ``Ratio.rerun_range``, which is meant to hold a rerun 95% of the time);
- no point stored as plain `ok` is more than 2× its clean value (the idle runs' p50).

    .venv/bin/python benchmarks/cpu_agreement.py [--busy-share 0.3] [--skip-idle | --skip-busy] [--cpu-pages base]
        [--cpu-placement fixed]
        [--rounds accurate] [--processes 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.analysis.noise import Ratio  # noqa: E402
from profilers.store import Store  # noqa: E402

COMPETITOR = r"""
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
"""


EXTRA_ARGS: list[str] = []  # passed to every sweep (e.g. --cpu-pages base)


def sweep(db: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "profilers", "run", "--db", str(db), *EXTRA_ARGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        sys.exit(f"sweep failed: {p.stderr[-2000:]}")
    with Store(db) as s:
        return s.list_runs()[0]["id"], time.perf_counter() - t0


def ratios(db: Path, run_id: int) -> dict[tuple, dict]:
    with Store(db) as s:
        pts = s.points(run_id)
    return {
        (p["variant"], p["impl"], p["tokens"], p["hidden"]): p
        for p in pts
        if p["status"] in ("ok", "imprecise", "unstable") and p.get("ratio") is not None
    }


def pair(db: Path, label: str, competitor: bool, share: float) -> tuple[dict, dict, float, float]:
    proc = None
    if competitor:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.Popen(
            [sys.executable, "-c", COMPETITOR, str(share), str(random.randrange(1 << 30))],
            env=env,
            start_new_session=True,
        )
    try:
        r1, w1 = sweep(db)
        r2, w2 = sweep(db)
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{label}: runs {r1} and {r2}, {w1:.0f} s and {w2:.0f} s", flush=True)
    return ratios(db, r1), ratios(db, r2), w1, w2


def report(label: str, a: dict, b: dict) -> None:
    keys = sorted(set(a) & set(b))
    print(f"\n{label}")
    print(
        f"{'point':<34} {'run 1 ratio [95%]':>26} {'run 2 ratio [95%]':>26} {'diff':>7}  in run 1's interval"
        " / rerun range"
    )
    agree = inside = rerun = compared = 0
    widths, unstable = [], [0, 0]
    for k in keys:
        p, q = a[k], b[k]
        if p["ratio_baseline"] == f"{k[0]} {k[1]}":
            continue  # the baseline itself: 1 by definition
        compared += 1
        diff = 100 * (q["ratio"] / p["ratio"] - 1)
        ok_agree = abs(diff) <= 5
        ok_inside = p["ratio_lo"] <= q["ratio"] <= p["ratio_hi"]
        lo, hi = Ratio(p["ratio"], p["ratio_lo"], p["ratio_hi"], "paired rounds").rerun_range
        ok_rerun = lo <= q["ratio"] <= hi
        agree += ok_agree
        inside += ok_inside
        rerun += ok_rerun
        widths.append(100 * (p["ratio_hi"] - p["ratio_lo"]) / (2 * p["ratio"]))
        unstable[0] += p["status"] == "unstable"
        unstable[1] += q["status"] == "unstable"
        name = f"{k[0]} {k[1]} {k[2]}x{k[3]}"
        print(
            f"{name:<34} {p['ratio']:>8.3f} [{p['ratio_lo']:.3f}, {p['ratio_hi']:.3f}] "
            f"{q['ratio']:>8.3f} [{q['ratio_lo']:.3f}, {q['ratio_hi']:.3f}] {diff:>+6.1f}%  "
            + ("yes" if ok_inside else "no")
            + (" / yes" if ok_rerun else " / no")
        )
    if compared:
        print(
            f"agree within 5%: {agree}/{compared} ({100 * agree / compared:.0f}%); run 2 inside run 1's interval: "
            f"{inside}/{compared} ({100 * inside / compared:.0f}%); inside its rerun range: {rerun}/{compared} "
            f"({100 * rerun / compared:.0f}%); run 1's intervals "
            f"±{sorted(widths)[len(widths) // 2]:.1f}% (median), ±{max(widths):.1f}% at most; "
            f"unstable ratios {unstable[0]} and {unstable[1]}"
        )


def blowups(busy: list[dict], clean: list[dict]) -> list[str]:
    """Points stored as plain ok in a busy run whose p50 is more than 2× the clean (idle) p50."""
    clean_p50 = {}
    for run in clean:
        for k, p in run.items():
            clean_p50[k] = min(clean_p50.get(k, float("inf")), p["p50_us"])
    out = []
    for run in busy:
        for k, p in run.items():
            if p["status"] == "ok" and k in clean_p50 and p["p50_us"] > 2 * clean_p50[k]:
                out.append(f"{k}: {p['p50_us']:.0f} µs vs clean {clean_p50[k]:.0f} µs")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--busy-share", type=float, default=0.3)
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--skip-busy", action="store_true")
    ap.add_argument("--cpu-pages", choices=("huge", "base"), help="the sweeps' CPU page mode (default: the CLI's)")
    ap.add_argument("--cpu-placement", choices=("round", "fixed"), help="the sweeps' CPU placement")
    ap.add_argument("--rounds", help="the sweeps' rounds: a number or quick|default|accurate (default: the CLI's)")
    ap.add_argument("--processes", type=int, help="each sweep spread over N fresh processes (default: the CLI's, 1)")
    a = ap.parse_args()
    if a.skip_idle and a.skip_busy:
        sys.exit("--skip-idle and --skip-busy leave nothing to run: drop one")
    if a.cpu_pages:
        EXTRA_ARGS.extend(["--cpu-pages", a.cpu_pages])
    if a.cpu_placement:
        EXTRA_ARGS.extend(["--cpu-placement", a.cpu_placement])
    if a.rounds:
        EXTRA_ARGS.extend(["--rounds", a.rounds])
    if a.processes:
        EXTRA_ARGS.extend(["--processes", str(a.processes)])
    db = Path(tempfile.mkdtemp()) / "agreement.db"
    busy1 = busy2 = None
    if not a.skip_busy:
        busy1, busy2, _, _ = pair(db, f"with a competitor ~{a.busy_share:.0%} busy", True, a.busy_share)
    runs_clean = []
    if not a.skip_idle:
        idle1, idle2, w1, w2 = pair(db, "idle machine", False, 0.0)
        runs_clean = [idle1, idle2]
        report("idle machine: run 1 vs run 2", idle1, idle2)
        print(f"default CPU sweep wall time on the idle machine: {w1:.0f} s and {w2:.0f} s")
    if busy1 is None or busy2 is None:
        return
    report(f"competitor ~{a.busy_share:.0%} busy: run 1 vs run 2", busy1, busy2)
    if runs_clean:
        bad = blowups([busy1, busy2], runs_clean)
        print(f"points stored as plain ok at more than 2× their clean p50: {len(bad)}")
        for line in bad:
            print("  " + line)


if __name__ == "__main__":
    main()
