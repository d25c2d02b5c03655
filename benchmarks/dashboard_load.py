"""Time the Results page on a large store (goal: ≤ 2 s per render), SQLite or PostgreSQL.

The store is filled with synthetic points (labelled "synthetic load test", never
shown as measurements elsewhere): RUNS runs × 1,000 points, one transaction per
run. Renders are timed server-side through Streamlit's AppTest, for the page's
default (newest run) and for ten runs selected at once (10,000 points).

    .venv/bin/python benchmarks/dashboard_load.py                      # SQLite, 50 runs
    .venv/bin/python benchmarks/dashboard_load.py --pg --runs 1000     # a throwaway PostgreSQL cluster
    .venv/bin/python benchmarks/dashboard_load.py --db postgresql://…  # an empty database of yours
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from profilers.spec import SweepSpec  # noqa: E402
from profilers.store import Store  # noqa: E402
from profilers.store.records import PointResult  # noqa: E402

PER_RUN = 1000


def fill(db: str, runs: int) -> None:
    rng = random.Random(0)
    variants = ("layernorm", "rmsnorm", "dyt", "groupnorm", "batchnorm")
    impls = ("eager", "native", "compiled", "liger")
    shapes = [(t, h) for t in (512, 2048, 8192, 32768) for h in (768, 4096, 8192)]
    spec = SweepSpec(
        variants=variants,
        impls=impls,
        shapes=tuple(shapes),
        dtypes=("bfloat16",),
        modes=("fwd", "fwdbwd"),
        device="cpu",
        label="synthetic load test",
    )
    with Store(db, migrate=True) as s:
        for r in range(runs):
            rows = []
            for seq in range(PER_RUN):
                v, i = variants[seq % 5], impls[(seq // 5) % 4]
                t, h = shapes[(seq // 20) % len(shapes)]
                mode = ("fwd", "fwdbwd")[(seq // 240) % 2]
                p50 = t * h * 4e-6 * rng.uniform(0.5, 3)
                rows.append(
                    PointResult(
                        v,
                        i,
                        "cpu",
                        "bfloat16",
                        t,
                        h,
                        mode,
                        "ok",
                        p20_us=p50 * 0.95,
                        p50_us=p50,
                        p80_us=p50 * 1.05,
                        mean_us=p50,
                        iqr_us=p50 * 0.05,
                        noisy=False,
                        n_samples=50,
                        gbps=rng.uniform(1, 30),
                        roofline_pct=rng.uniform(5, 95),
                        peak_bytes=t * h * 2,
                        timing_method="cpu_blocks",
                    )
                )
            run = {
                "uid": f"synthetic-{r:05d}",
                "status": "completed",
                "label": f"synthetic load test {r}",
                "created_at": f"2026-01-01T00:{r // 60 % 60:02d}:{r % 60:02d}+00:00",
                "spec": spec.to_dict(),
                "machine": {"cpu_model": "synthetic"},
                "versions": {"torch": "synthetic"},
                "points_planned": PER_RUN,
            }
            s.insert_imported(run, [{**p.to_dict(), "seq": seq} for seq, p in enumerate(rows)], source="local")


def render(select: list[int] | None) -> float:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/results.py")
    t0 = time.perf_counter()
    at.run()
    if select:
        t0 = time.perf_counter()
        at.multiselect[0].set_value(select).run()
    elapsed = time.perf_counter() - t0
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="runs of 1,000 points each (default 50)")
    ap.add_argument("--db", help="an empty store to fill: a file path or a postgresql:// URL (default: a temp file)")
    ap.add_argument("--pg", action="store_true", help="fill a throwaway PostgreSQL cluster (Debian's server)")
    a = ap.parse_args()
    cluster = None
    with tempfile.TemporaryDirectory() as tmp:
        if a.pg:
            sys.path.insert(0, str(ROOT / "tests"))
            import pg

            cluster = pg.Cluster()
            db = cluster.create_database("load")
        else:
            db = a.db or str(Path(tmp) / "results.db")
        try:
            _measure(db, a.runs)
        finally:
            if cluster is not None:
                cluster.close()


def _measure(db: str, runs: int) -> None:
    t0 = time.perf_counter()
    fill(db, runs)
    with Store(db) as s:
        print(f"filled {runs * PER_RUN:,} points in {time.perf_counter() - t0:.1f} s into {s.where}")
        t0 = time.perf_counter()
        listed = s.list_runs()
        print(f"list_runs over {len(listed)} runs: {time.perf_counter() - t0:.2f} s")
        newest = [r["id"] for r in listed][:10]
    os.environ["NORMSCOPE_DB"] = db
    render(None)  # warm imports and caches
    default = [render(None) for _ in range(5)]
    ten = [render(newest) for _ in range(3)]
    print(
        f"Results page, default selection (1,000 points): median {statistics.median(default):.2f} s "
        f"(min {min(default):.2f}, max {max(default):.2f}) over {len(default)} renders"
    )
    print(
        f"Results page, 10 runs selected (10,000 points): median {statistics.median(ten):.2f} s "
        f"(min {min(ten):.2f}, max {max(ten):.2f}) over {len(ten)} renders; goal ≤ 2 s"
    )


if __name__ == "__main__":
    main()
