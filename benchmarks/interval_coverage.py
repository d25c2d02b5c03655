"""What two runs of one ratio can agree on, when nothing differs between them but chance.

Simulates pairs of runs of a candidate against its baseline: per-round medians with log-normal noise of a
given spread (the same for both runs, no between-process effect at all), the paired ratio and its 95%
interval computed exactly as a sweep does (``noise.paired_ratio``: bootstrap over rounds). Prints, per rounds
and per-round spread:

- the share of runs whose 95% interval holds the true ratio (2.0): the interval's own coverage, which the
  expanded percentile interval keeps at or above 95% for few rounds (a plain percentile bootstrap of 7
  rounds held it about 87% of the time);
- the share of run 2's ratios inside run 1's interval (an interval for run 1's ratio is not an interval for
  another run's: even a perfect 95% interval of a normal estimate holds the next run's value about 83% of
  the time, since both runs carry their own error);
- the share of run 2's ratios inside run 1's rerun range (``Ratio.rerun_range``: the interval √2 wider on a
  log scale), which should be about 95% when chance is all that differs;
- the share of run pairs whose ratios agree within 5%;
- the half-width a prediction interval for the next run would need to hold it 90% of the time.

So the agreement goals of a benchmark such as ``cpu_agreement.py`` can be read against what chance alone
allows. A second table adds what differs between runs: a between-run effect (normal, sd σ_b) or a two-state
machine (each run in one of two states ±δ on the log scale, as the 4096×4096 calibration on the 2-core VM
showed); each trial calibrates from K runs (``rerun.between_from_runs``) and asks whether run 2 lands in
run 1's rerun interval (``rerun.rerun_interval``), and how wide that interval is. No timing: safe to run
beside anything.

    .venv/bin/python benchmarks/interval_coverage.py [--trials 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import math  # noqa: E402
import statistics  # noqa: E402

from profilers.analysis import rerun  # noqa: E402
from profilers.analysis.noise import paired_ratio  # noqa: E402


def one_run(rng: random.Random, rounds: int, sigma: float, seed: int, shift: float = 0.0):
    base = [1000.0 * rng.lognormvariate(0, sigma) for _ in range(rounds)]
    cand = [b * 2.0 * math.exp(shift) * rng.lognormvariate(0, sigma) for b in base]
    return paired_ratio(cand, base, seed)


def between_effect(rng: random.Random, kind: str, size: float) -> float:
    """One run's shift of the log ratio: normal with sd ``size``, or one of two states ±``size``."""
    return rng.gauss(0, size) if kind == "normal" else (size if rng.random() < 0.5 else -size)


def rerun_table(trials: int, calibration_runs: int) -> None:
    rng = random.Random(1)
    print(f"\nrerun intervals, calibrated from {calibration_runs} runs (per-round sd 4%, 7 rounds)")
    print(f"{'between-run effect':>22} {'run 2 in rerun interval':>24} {'median half-width':>18}")
    for kind, size in (("normal", 0.0), ("normal", 0.02), ("normal", 0.05), ("two states", 0.03), ("two states", 0.1)):
        held, widths = 0, []
        for t in range(trials):
            cal = [one_run(rng, 7, 0.04, 10 * t + k, between_effect(rng, kind, size)) for k in range(calibration_runs)]
            logs, sds = [math.log(r.value) for r in cal], [rerun.within_sd_log(r, 7) for r in cal]
            b = rerun.between_from_runs(logs, sds, "sim")
            r1 = one_run(rng, 7, 0.04, 10**6 + t, between_effect(rng, kind, size))
            r2 = one_run(rng, 7, 0.04, 2 * 10**6 + t, between_effect(rng, kind, size))
            iv = rerun.rerun_interval(r1, b, 7)
            held += iv.lo <= r2.value <= iv.hi
            widths.append(iv.half_width_pct)
        name = f"{kind} {size:.0%}" if size else "none"
        print(f"{name:>22} {held / trials:>24.0%} {statistics.median(widths):>17.1f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--calibration-runs", type=int, default=6, help="runs each simulated calibration rests on")
    a = ap.parse_args()
    if a.trials < 10:
        sys.exit("--trials must be at least 10")
    rng = random.Random(0)
    print(
        f"{'rounds':>6} {'per-round sd':>12} {'holds true':>10} {'inside':>7} {'in rerun range':>14} {'within 5%':>9} "
        f"{'90% prediction half-width':>26}"
    )
    for rounds in (7, 14, 30):
        for sigma in (0.02, 0.04, 0.08):
            holds = inside = rerun = agree = 0
            diffs = []
            for t in range(a.trials):
                r1, r2 = one_run(rng, rounds, sigma, t), one_run(rng, rounds, sigma, t + a.trials)
                holds += r1.lo <= 2.0 <= r1.hi
                inside += r1.lo <= r2.value <= r1.hi
                lo, hi = r1.rerun_range
                rerun += lo <= r2.value <= hi
                agree += abs(r2.value / r1.value - 1) <= 0.05
                diffs.append(abs(r2.value / r1.value - 1))
            diffs.sort()
            need = diffs[int(0.9 * len(diffs))]
            print(
                f"{rounds:>6} {sigma:>12.0%} {holds / a.trials:>10.0%} {inside / a.trials:>7.0%} "
                f"{rerun / a.trials:>14.0%} "
                f"{agree / a.trials:>9.0%} {need:>25.1%}",
                flush=True,
            )
    rerun_table(a.trials, a.calibration_runs)


if __name__ == "__main__":
    main()
