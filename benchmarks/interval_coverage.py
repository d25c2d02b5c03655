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
allows. No timing: safe to run beside anything.

    .venv/bin/python benchmarks/interval_coverage.py [--trials 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.analysis.noise import paired_ratio  # noqa: E402


def one_run(rng: random.Random, rounds: int, sigma: float, seed: int):
    base = [1000.0 * rng.lognormvariate(0, sigma) for _ in range(rounds)]
    cand = [b * 2.0 * rng.lognormvariate(0, sigma) for b in base]
    return paired_ratio(cand, base, seed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
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


if __name__ == "__main__":
    main()
