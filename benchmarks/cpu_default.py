"""Time the default CPU sweep end to end, twice, and compare the two runs' p50s.

Goals (issue: profiling engine): ≤ 90 s per sweep on a 2-core machine, compile included;
p50s of the two back-to-back runs within 10% on at least 90% of the points.

    .venv/bin/python benchmarks/cpu_default.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(db: Path, extra: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "profilers",
            "run",
            "--db",
            str(db),
            "--json",
            "--label",
            "cpu_default benchmark",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"sweep failed: {p.stderr.strip().splitlines()[-1]}")
    return wall, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, help="pass --threads to the sweep (default: all cores)")
    ap.add_argument("--budget-ms", type=float, help="pass --budget-ms to the sweep (default: the spec's)")
    a = ap.parse_args()
    extra = ["--threads", str(a.threads)] if a.threads else []
    extra += ["--budget-ms", str(a.budget_ms)] if a.budget_ms else []
    with tempfile.TemporaryDirectory() as tmp:
        results = [one_run(Path(tmp) / f"r{i}.db", extra) for i in range(a.runs)]
    for i, (wall, doc) in enumerate(results):
        ok = [p for p in doc["points"] if p["status"] == "ok"]
        comp = sum(p["compile_s"] or 0 for p in ok)
        print(
            f"run {i + 1}: {wall:.1f} s wall for {len(doc['points'])} points ({len(ok)} ok), "
            f"compile {comp:.1f} s, copy {doc['copy_gbps']:.1f} GB/s"
        )
    first, second = results[0][1]["points"], results[-1][1]["points"]
    print(f"\n{'point':<45} {'p50 run1 µs':>12} {'p50 run2 µs':>12} {'diff':>7}")
    within, total = 0, 0
    for p, q in zip(first, second):
        if p["status"] != "ok" or q["status"] != "ok":
            continue
        d = q["p50_us"] / p["p50_us"] - 1
        total += 1
        within += abs(d) <= 0.10
        name = f"{p['variant']} {p['impl']} {p['dtype']} {p['tokens']}x{p['hidden']} {p['mode']}"
        print(f"{name:<45} {p['p50_us']:>12,.1f} {q['p50_us']:>12,.1f} {d:>+7.1%}")
    print(
        f"\nagreement: {within}/{total} points within 10% ({within / max(total, 1):.0%}); "
        f"wall max {max(w for w, _ in results):.1f} s (goal ≤ 90 s)"
    )


if __name__ == "__main__":
    main()
