"""How much does a CPU ratio move between fresh processes, and do the intervals cover it?

Runs the same small sweep (LayerNorm and RMSNorm native, fp32 forward, one shape) in N fresh processes
of `python -m profilers run`, one after the other on an otherwise idle machine, and prints each process's
paired ratio RMS/LN with its 95% interval (from rounds inside that process), then:

- the spread of the process ratios (min, max, max/min − 1);
- the share of process pairs whose ratios agree within 5%;
- the share of (i, j) pairs where process j's ratio falls inside process i's interval.

When the intervals are tight and the coverage low, the variation lives between processes (a process keeps
its own memory placement for its life), and only rounds spread over several processes can show it.

    .venv/bin/python benchmarks/cpu_process_spread.py [--processes 6] [--shape 4096x4096] [--rounds default]
        [--cpu-pages huge|base] [--cpu-placement round|fixed]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profilers.store import Store  # noqa: E402


def one_process(db: Path, shape: str, rounds: str, pages: str, placement: str) -> tuple[float, float, float]:
    cmd = [sys.executable, "-m", "profilers", "run", "--variants", "layernorm,rmsnorm", "--impls", "native"]
    cmd += ["--shapes", shape, "--dtypes", "fp32", "--modes", "fwd", "--rounds", rounds, "--db", str(db)]
    cmd += ["--cpu-pages", pages, "--cpu-placement", placement]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        sys.exit(f"sweep failed: {p.stderr[-2000:]}")
    with Store(db) as s:
        (run,) = s.list_runs()
        rms = next(q for q in s.points(run["id"]) if q["variant"] == "rmsnorm")
    if rms["ratio"] is None:
        sys.exit(f"no paired ratio for RMSNorm: {rms['status']} {rms['error']}")
    return rms["ratio"], rms["ratio_lo"], rms["ratio_hi"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=6)
    ap.add_argument("--shape", default="4096x4096")
    ap.add_argument("--rounds", default="default")
    ap.add_argument("--cpu-pages", default="huge", choices=("huge", "base"))
    ap.add_argument("--cpu-placement", default="round", choices=("round", "fixed"))
    a = ap.parse_args()
    if a.processes < 2:
        sys.exit("--processes must be at least 2: a spread needs two processes to compare")
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.processes):
            r, lo, hi = one_process(Path(tmp) / f"p{i}.db", a.shape, a.rounds, a.cpu_pages, a.cpu_placement)
            rows.append((r, lo, hi))
            print(f"process {i + 1}: RMS/LN {r:.3f} [{lo:.3f}, {hi:.3f}] (±{50 * (hi - lo) / r:.1f}%)", flush=True)
    ratios = [r for r, _, _ in rows]
    pairs = list(itertools.combinations(range(len(rows)), 2))
    agree = sum(abs(ratios[i] / ratios[j] - 1) <= 0.05 for i, j in pairs)
    ordered = [(i, j) for i in range(len(rows)) for j in range(len(rows)) if i != j]
    inside = sum(rows[i][1] <= ratios[j] <= rows[i][2] for i, j in ordered)
    half = statistics.median(50 * (hi - lo) / r for r, lo, hi in rows)
    print(
        f"\nRMSNorm native ÷ LayerNorm native, fp32 fwd {a.shape}, {a.cpu_pages} pages, placement {a.cpu_placement}, "
        f"{a.processes} fresh processes "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    print(f"process ratios {min(ratios):.3f}-{max(ratios):.3f} (spread {100 * (max(ratios) / min(ratios) - 1):.1f}%)")
    print(f"median interval half-width ±{half:.1f}%")
    print(f"pairs agreeing within 5%: {agree}/{len(pairs)} ({100 * agree / len(pairs):.0f}%)")
    print(f"ratios inside another process's interval: {inside}/{len(ordered)} ({100 * inside / len(ordered):.0f}%)")


if __name__ == "__main__":
    main()
